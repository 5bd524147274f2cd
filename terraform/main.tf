# launchq on Google Cloud: Pub/Sub in, a dispatch function that submits Vertex AI CustomJobs,
# a sweep function Cloud Scheduler calls every minute, all state in Firestore.
#
#   publisher -> launchq-q-<queue> --push (OIDC)--> dispatch --> Vertex AI CustomJob
#                     | after N failed deliveries          |--> Firestore items/, queues/
#                     v                                    '--> <prefix>-events (CloudEvents)
#               <prefix>-dead-letter --> <prefix>-dead-letter-sub (kept 7 days)
#
# A publisher may launch onto a queue when it holds roles/pubsub.publisher on that queue's topic
# (var.queues); the shared <prefix>-items topic is an opt-in (var.shared_items_topic).
#   Cloud Scheduler --HTTP POST (OIDC)--> sweep --> Vertex get/list/cancel/create, Firestore, events
#   <prefix>-events --push (OIDC)--> notify --> Slack, webhooks, Pub/Sub topics (the queues' rules)
#
# The sweep logs each queue's signals every pass; log-based metrics turn them and the
# admission, failure and quota lines into Cloud Monitoring metrics (monitoring.tf).
#
# Files: apis.tf, pubsub.tf, functions.tf, scheduler.tf, firestore.tf, iam.tf, image_builds.tf,
# dashboard.tf, monitoring.tf, outputs.tf.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Every LAUNCHQ_* variable shared/launchq/settings.py reads, and nothing else:
  # tests/terraform/test_module.py checks these names against that file. A null value is left
  # out of the environment, so the code's own default applies (LAUNCHQ_VERTEX_ENDPOINT unset in
  # production means https://{region}-aiplatform.googleapis.com).
  launchq_environment = {
    LAUNCHQ_PROJECT                       = var.project_id
    LAUNCHQ_FIRESTORE_DATABASE            = var.firestore_database
    LAUNCHQ_QUEUE_TOPIC                   = one(google_pubsub_topic.items[*].name)
    LAUNCHQ_EVENTS_TOPIC                  = google_pubsub_topic.events.name
    LAUNCHQ_VERTEX_ENDPOINT               = var.vertex_endpoint
    LAUNCHQ_SUBMIT_LEASE_SECONDS          = tostring(var.submit_lease_seconds)
    LAUNCHQ_QUEUE_CACHE_SECONDS           = tostring(var.queue_cache_seconds)
    LAUNCHQ_VERTEX_TIMEOUT_SECONDS        = tostring(var.vertex_timeout_seconds)
    LAUNCHQ_CREATE_RATE_PER_MINUTE        = tostring(var.create_rate_per_minute)
    LAUNCHQ_CREATE_RATES                  = length(var.create_rates) == 0 ? null : join(",", [for region, rate in var.create_rates : "${region}=${rate}"])
    LAUNCHQ_QUOTA_BACKOFF_INITIAL_SECONDS = tostring(var.quota_backoff_initial_seconds)
    LAUNCHQ_QUOTA_BACKOFF_MAX_SECONDS     = tostring(var.quota_backoff_max_seconds)
    LAUNCHQ_SWEEP_INTERVAL_SECONDS        = tostring(var.sweep_interval_seconds)
    LAUNCHQ_SWEEP_BUSY_INTERVAL_SECONDS   = tostring(var.sweep_busy_interval_seconds)
    LAUNCHQ_SWEEP_PERIOD_SECONDS          = tostring(var.sweep_period_seconds)
    LAUNCHQ_STORAGE_ENDPOINT              = var.storage_endpoint
    LAUNCHQ_CLOUDBUILD_ENDPOINT           = var.cloudbuild_endpoint
    LAUNCHQ_ARTIFACTREGISTRY_ENDPOINT     = var.artifactregistry_endpoint
    LAUNCHQ_BUILD_REPOSITORY              = local.image_build_repository
    LAUNCHQ_CLOUDQUOTAS_ENDPOINT          = var.cloudquotas_endpoint
    LAUNCHQ_QUOTA_READ_SECONDS            = tostring(var.quota_read_seconds)
    # One delivery of a sweep checks and records children for at most half the dispatch
    # function's timeout; the sweep function records the rest (docs/sweeps.md).
    LAUNCHQ_EXPAND_SECONDS = tostring(floor(var.dispatch_timeout_seconds / 2))
    # The notify function's (docs/notifications.md): where it reads the rules' secrets and a
    # failed job's last log lines, and the dashboard its messages link to. The notify function
    # gets the dashboard service's URL when there is one (local.notify_environment, in
    # functions.tf): here only the variable, or the dashboard service, whose environment this
    # is too, would depend on itself.
    LAUNCHQ_SECRETMANAGER_ENDPOINT = var.secretmanager_endpoint
    LAUNCHQ_LOGGING_ENDPOINT       = var.logging_endpoint
    LAUNCHQ_DASHBOARD_URL          = var.dashboard_url
  }
  # The event states the notify function acts on (launchq.spec.notify: OUTCOMES and WAITING).
  notify_states        = ["FAILED", "SUCCEEDED", "CANCELLED", "EXPIRED", "WAITING"]
  function_environment = { for name, value in local.launchq_environment : name => value if value != null }

  labels = merge(var.labels, { app = "launchq" })

  # The queue topic naming rule, launchq-q-<queue>. Fixed, not derived from name_prefix: the CLI
  # computes a queue's topic from the queue name alone.
  queue_topic_prefix = "launchq-q-"

  # Every topic the dispatcher is fed from: one per queue, plus the shared topic when enabled.
  # "_shared" cannot clash with a queue: queue names start with a letter or digit.
  dispatch_topics = merge(
    {
      for queue in keys(var.queues) : queue => {
        topic        = google_pubsub_topic.queue[queue].id
        subscription = "${var.name_prefix}-dispatch-q-${queue}"
      }
    },
    {
      for key, value in {
        _shared = {
          topic        = one(google_pubsub_topic.items[*].id)
          subscription = "${var.name_prefix}-dispatch"
        }
      } : key => value if var.shared_items_topic
    },
  )

  # The Pub/Sub service agent: it pushes to the dispatcher, forwards to the dead-letter topic
  # and acknowledges the forwarded message on the source subscription.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  archives_dir = coalesce(var.function_archives_dir, "${path.module}/../build/functions")
}
