# The dashboard (`launchq ui`, docs/dashboard.md) as an opt-in Cloud Run service. Nothing here
# exists unless var.dashboard.enabled. Only the listed members may open it: run.invoker on this
# one service, never to the public (the variable's validation accepts only user:, group:,
# serviceAccount: and domain: members). Its identity
# reads launchq's Firestore database and Cloud Logging, and may publish to the queue topics,
# which is all `launchq cancel` needs (the dispatcher does the cancelling with its own rights).

locals {
  dashboard_enabled = var.dashboard.enabled
  dashboard_topics = local.dashboard_enabled ? merge(
    { for queue, topic in google_pubsub_topic.queue : queue => topic.name },
    { for topic in google_pubsub_topic.items : "_shared" => topic.name },
  ) : {}
}

resource "google_service_account" "dashboard" {
  count = local.dashboard_enabled ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-dashboard"
  display_name = "launchq dashboard"
  description  = "Runtime identity of the launchq dashboard: reads state and logs, publishes cancel requests."
}

# The items and queues it shows, read-only, in launchq's database only (as state_viewer).
resource "google_project_iam_member" "dashboard_state" {
  count = local.dashboard_enabled ? 1 : 0

  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = google_service_account.dashboard[0].member

  condition {
    title       = "launchq state only"
    description = "Read-only access to the Firestore database launchq keeps its state in."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database}\""
  }
}

# The job log tail on an item's page (Cloud Logging has no narrower grant for entries.list).
resource "google_project_iam_member" "dashboard_logs" {
  count = local.dashboard_enabled ? 1 : 0

  project = var.project_id
  role    = "roles/logging.viewer"
  member  = google_service_account.dashboard[0].member
}

resource "google_pubsub_topic_iam_member" "dashboard_publisher" {
  for_each = local.dashboard_topics

  project = var.project_id
  topic   = each.value
  role    = "roles/pubsub.publisher"
  member  = google_service_account.dashboard[0].member
}

resource "google_cloud_run_v2_service" "dashboard" {
  count = local.dashboard_enabled ? 1 : 0

  project             = var.project_id
  name                = "${var.name_prefix}-dashboard"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL" # reachable, but every request needs run.invoker
  deletion_protection = false
  labels              = local.labels

  template {
    service_account = google_service_account.dashboard[0].email
    scaling {
      max_instance_count = 2
    }
    containers {
      image = var.dashboard.image
      # The image has launchq installed (`pip install launchq`); Cloud Run sends PORT=8080.
      command = ["launchq", "ui", "--host", "0.0.0.0", "--port", "8080"]
      ports {
        container_port = 8080
      }
      dynamic "env" {
        for_each = local.function_environment
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.dashboard.image != ""
      error_message = "dashboard.image must name a container image with launchq installed when dashboard.enabled is true."
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_cloud_run_v2_service_iam_member" "dashboard_invoker" {
  for_each = local.dashboard_enabled ? toset(var.dashboard.members) : toset([])

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.dashboard[0].name
  role     = "roles/run.invoker"
  member   = each.value
}
