# Cloud Scheduler calls the sweep every minute (sweep_schedule) with an OIDC token of the
# scheduler service account, the only identity allowed to invoke it. The attempt deadline is
# the sweep's own timeout, so Scheduler never gives up on a run the function is still doing.
# No retries: the next scheduled run comes within a minute anyway.

resource "google_cloud_scheduler_job" "sweep" {
  project     = var.project_id
  region      = var.region
  name        = "${var.name_prefix}-sweep"
  description = "Runs the launchq sweep."
  schedule    = var.sweep_schedule
  time_zone   = var.sweep_time_zone

  attempt_deadline = "${var.sweep_timeout_seconds}s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.sweep.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.sweep.service_config[0].uri
    }
  }

  depends_on = [
    google_project_service.required,
    google_cloud_run_v2_service_iam_member.sweep_invoker,
  ]
}
