terraform {
  # Preconditions (lifecycle) need 1.2; optional() attributes 1.3. Tested with 1.11.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # build_config.service_account on google_cloudfunctions2_function and the
      # google_cloud_run_v2_service_iam_* resources exist in every 6.x release.
      version = ">= 6.0, < 8.0"
    }
  }
}
