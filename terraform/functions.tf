# The function archives (built by `make package`), the bucket they are uploaded to, and the
# three gen2 functions. The object names carry the archive's hash, so a changed archive is a new
# object and redeploys its function; an unchanged one changes nothing.

locals {
  source_bucket_name = coalesce(var.source_bucket_name, "${var.project_id}-${var.name_prefix}-functions")
  dispatch_archive   = "${local.archives_dir}/dispatch.zip"
  sweep_archive      = "${local.archives_dir}/sweep.zip"
  notify_archive     = "${local.archives_dir}/notify.zip"

  # Each function's name, which is also its Cloud Run service's: the log-based metrics
  # (monitoring.tf) select the logs of these services by it.
  function_names = {
    dispatch = "${var.name_prefix}-dispatch"
    sweep    = "${var.name_prefix}-sweep"
    notify   = "${var.name_prefix}-notify"
  }

  # The notify function's environment: everybody's LAUNCHQ_*, and the dashboard's URL for the
  # links in its messages: dashboard_url when set (a custom domain in front of it), else the
  # module's dashboard service when enabled, else none.
  notify_dashboard_url = var.dashboard_url != null ? var.dashboard_url : one(google_cloud_run_v2_service.dashboard[*].uri)
  notify_environment = {
    for name, value in merge(local.launchq_environment, { LAUNCHQ_DASHBOARD_URL = local.notify_dashboard_url }) :
    name => value if value != null
  }
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds only content-addressed build inputs written by Terraform. Access logging needs a second log bucket; reads and writes are already in Cloud Audit Logs (enable Data Access logs for storage to see them).
  project  = var.project_id
  name     = local.source_bucket_name
  location = var.region
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.source_bucket_force_destroy

  versioning {
    enabled = true
  }

  # Archives are content-addressed; old ones are only needed to roll back a deploy.
  lifecycle_rule {
    condition {
      num_newer_versions = 3
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_storage_bucket_object" "dispatch" {
  bucket       = google_storage_bucket.sources.name
  name         = "dispatch/${filesha256(local.dispatch_archive)}.zip"
  source       = local.dispatch_archive
  content_type = "application/zip"
}

resource "google_storage_bucket_object" "sweep" {
  bucket       = google_storage_bucket.sources.name
  name         = "sweep/${filesha256(local.sweep_archive)}.zip"
  source       = local.sweep_archive
  content_type = "application/zip"
}

resource "google_storage_bucket_object" "notify" {
  bucket       = google_storage_bucket.sources.name
  name         = "notify/${filesha256(local.notify_archive)}.zip"
  source       = local.notify_archive
  content_type = "application/zip"
}

# dispatch: a CloudEvent function (functions/dispatch/main.py, target `dispatch`). It is fed by
# the push subscription in pubsub.tf, not by an Eventarc trigger; see there why. Only the push
# service account may invoke it, and only from inside Google's network.
resource "google_cloudfunctions2_function" "dispatch" {
  project     = var.project_id
  location    = var.region
  name        = local.function_names.dispatch
  description = "launchq dispatcher: renders each queue item into a Vertex AI CustomJob and submits it within the queue's max_jobs."
  labels      = local.labels

  build_config {
    runtime         = var.python_runtime
    entry_point     = "dispatch"
    service_account = var.build_service_account == null ? null : "projects/${var.project_id}/serviceAccounts/${var.build_service_account}"

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.dispatch.name
      }
    }
  }

  service_config {
    available_memory                 = var.dispatch_memory
    timeout_seconds                  = var.dispatch_timeout_seconds
    min_instance_count               = 0
    max_instance_count               = var.dispatch_max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.dispatch.email
    environment_variables            = local.function_environment
  }

  lifecycle {
    precondition {
      condition     = var.submit_lease_seconds > var.dispatch_timeout_seconds
      error_message = "submit_lease_seconds (${var.submit_lease_seconds}) must be greater than dispatch_timeout_seconds (${var.dispatch_timeout_seconds}): a submit lease that can expire while its dispatcher still runs lets a second submitter create a duplicate job."
    }
    precondition {
      condition     = var.vertex_timeout_seconds < var.dispatch_timeout_seconds
      error_message = "vertex_timeout_seconds (${var.vertex_timeout_seconds}) must be less than dispatch_timeout_seconds (${var.dispatch_timeout_seconds}), or one Vertex call can outlive the invocation."
    }
  }

  depends_on = [
    google_project_service.required,
    google_project_iam_member.dispatch,
  ]
}

# sweep: an HTTP function (functions/sweep/main.py, target `sweep`) that Cloud Scheduler calls.
# Not public: internal ingress, and run.invoker is granted to the scheduler's service account
# alone.
resource "google_cloudfunctions2_function" "sweep" {
  project     = var.project_id
  location    = var.region
  name        = local.function_names.sweep
  description = "launchq sweeper: records Vertex job states in Firestore, refills freed slots, retries what should be retried."
  labels      = local.labels

  build_config {
    runtime         = var.python_runtime
    entry_point     = "sweep"
    service_account = var.build_service_account == null ? null : "projects/${var.project_id}/serviceAccounts/${var.build_service_account}"

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.sweep.name
      }
    }
  }

  service_config {
    available_memory                 = var.sweep_memory
    timeout_seconds                  = var.sweep_timeout_seconds
    min_instance_count               = 0
    max_instance_count               = 1 # one sweep at a time; overlapping runs only add contention
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.sweep.email
    environment_variables            = local.function_environment
  }

  lifecycle {
    precondition {
      condition     = var.submit_lease_seconds > var.sweep_timeout_seconds
      error_message = "submit_lease_seconds (${var.submit_lease_seconds}) must be greater than sweep_timeout_seconds (${var.sweep_timeout_seconds}): the sweep submits jobs under the same lease."
    }
    # One invocation loops until just before the next scheduled one (launchq.sweep.Sweeper.loop):
    # the function must be allowed to run a whole period, or it is killed mid-pass.
    precondition {
      condition     = var.sweep_timeout_seconds > var.sweep_period_seconds
      error_message = "sweep_timeout_seconds (${var.sweep_timeout_seconds}) must be greater than sweep_period_seconds (${var.sweep_period_seconds}): one sweep invocation loops for a whole schedule period."
    }
  }

  depends_on = [
    google_project_service.required,
    google_project_iam_member.sweep,
  ]
}

# notify: a CloudEvent function (functions/notify/main.py, target `notify`) fed, like the
# dispatcher, by a push subscription of our own on the events topic (pubsub.tf): its retry
# backoff and dead-letter policy are declared there, which an Eventarc trigger would not allow.
# It tells people how their items ended (docs/notifications.md): a receiver that failed makes
# it answer 500, and Pub/Sub's redelivery with backoff is its retry. Only the push service
# account may invoke it, and only from inside Google's network.
resource "google_cloudfunctions2_function" "notify" {
  project     = var.project_id
  location    = var.region
  name        = local.function_names.notify
  description = "launchq notifier: tells the queues' notification rules (Slack, webhooks, Pub/Sub) how items ended, once per outcome."
  labels      = local.labels

  build_config {
    runtime         = var.python_runtime
    entry_point     = "notify"
    service_account = var.build_service_account == null ? null : "projects/${var.project_id}/serviceAccounts/${var.build_service_account}"

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.notify.name
      }
    }
  }

  service_config {
    available_memory                 = var.notify_memory
    timeout_seconds                  = var.notify_timeout_seconds
    min_instance_count               = 0
    max_instance_count               = var.notify_max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.notify.email
    environment_variables            = local.notify_environment
  }

  depends_on = [
    google_project_service.required,
    google_project_iam_member.notify,
  ]
}
