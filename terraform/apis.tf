# logging: the notify function reads a failed job's last log lines (entries.list).
locals {
  required_apis = toset([
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "required" {
  for_each = var.enable_apis ? local.required_apis : toset([])

  project = var.project_id
  service = each.value

  # Other workloads in the project may use these APIs too; destroying launchq must not turn
  # them off.
  disable_on_destroy         = false
  disable_dependent_services = false
}

# Cohorts with `read_quotas`: the sweep reads quota limits from Cloud Quotas (iam.tf).
resource "google_project_service" "cloudquotas" {
  count = var.enable_apis && var.read_cohort_quotas ? 1 : 0

  project                    = var.project_id
  service                    = "cloudquotas.googleapis.com"
  disable_on_destroy         = false
  disable_dependent_services = false
}

# The queue signals' log-based metrics, the dashboard and the alerts (monitoring.tf).
resource "google_project_service" "monitoring" {
  count = var.enable_apis && var.enable_monitoring ? 1 : 0

  project                    = var.project_id
  service                    = "monitoring.googleapis.com"
  disable_on_destroy         = false
  disable_dependent_services = false
}
