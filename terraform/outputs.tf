output "queue_topics" {
  description = "The topic of each queue in var.queues (launchq-q-<queue>), keyed by queue name. Publishing to it launches onto that queue."
  value       = { for queue, topic in google_pubsub_topic.queue : queue => topic.name }
}

output "queue_topic" {
  description = "The shared topic every queue can be launched onto (LAUNCHQ_QUEUE_TOPIC), or null unless shared_items_topic is true."
  value       = one(google_pubsub_topic.items[*].name)
}

output "events_topic" {
  description = "Topic the functions publish state-change CloudEvents to (LAUNCHQ_EVENTS_TOPIC). Subscribe to it to follow items."
  value       = google_pubsub_topic.events.name
}

output "dead_letter_topic" {
  description = "Topic queue items go to after dispatch_max_delivery_attempts failed deliveries."
  value       = google_pubsub_topic.dead_letter.name
}

output "dead_letter_subscription" {
  description = "Pull subscription that keeps dead-lettered items for 7 days."
  value       = google_pubsub_subscription.dead_letter.name
}

output "dispatch_subscriptions" {
  description = "The push subscriptions that feed the dispatch function, keyed by queue name (\"_shared\" for the shared topic)."
  value       = { for key, subscription in google_pubsub_subscription.dispatch : key => subscription.name }
}

output "dispatch_function_url" {
  description = "URL of the dispatch function (internal ingress; invokable only by the push service account)."
  value       = google_cloudfunctions2_function.dispatch.service_config[0].uri
}

output "sweep_function_url" {
  description = "URL of the sweep function (internal ingress; invokable only by the scheduler service account)."
  value       = google_cloudfunctions2_function.sweep.service_config[0].uri
}

output "notify_function_url" {
  description = "URL of the notify function (internal ingress; invokable only by the push service account, from its subscription on the events topic)."
  value       = google_cloudfunctions2_function.notify.service_config[0].uri
}

output "notify_subscription" {
  description = "The push subscription on the events topic that feeds the notify function."
  value       = google_pubsub_subscription.notify.name
}

output "firestore_database" {
  description = "Firestore database id the functions use (LAUNCHQ_FIRESTORE_DATABASE)."
  value       = local.firestore_database
}

output "service_accounts" {
  description = "Emails of the service accounts the module created."
  value = {
    dispatch  = google_service_account.dispatch.email
    sweep     = google_service_account.sweep.email
    notify    = google_service_account.notify.email
    scheduler = google_service_account.scheduler.email
    push      = google_service_account.push.email
    job       = one(google_service_account.job[*].email)
  }
}

output "job_service_account" {
  description = "Default service account for Vertex jobs (null when create_job_service_account is false). Use it as the queue config's service account."
  value       = one(google_service_account.job[*].email)
}

output "source_bucket" {
  description = "Bucket holding the function archives."
  value       = google_storage_bucket.sources.name
}

output "publish_example" {
  description = "A gcloud command that publishes one queue item to the first queue's topic (replace the image), or to the shared topic when there is no queue."
  value       = local.example_topic == null ? null : <<-EOT
    gcloud pubsub topics publish ${local.example_topic} --project=${var.project_id} \
      --attribute=item_id=first-run-001,queue=${local.example_queue} \
      --message='{"queue": "${local.example_queue}", "item_id": "first-run-001", "image_uri": "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest", "command": ["python", "-c", "print(42)"]}'
  EOT
}

locals {
  example_queue = try(sort(keys(var.queues))[0], "default")
  example_topic = length(var.queues) > 0 ? "${local.queue_topic_prefix}${local.example_queue}" : one(google_pubsub_topic.items[*].name)
}

output "dashboard_url" {
  description = "URL of the dashboard's Cloud Run service (only dashboard.members may open it), or null unless dashboard.enabled."
  value       = one(google_cloud_run_v2_service.dashboard[*].uri)
}

output "image_build_repository" {
  description = "Where queues' builder.destination must point (LAUNCHQ_BUILD_REPOSITORY): <location>-docker.pkg.dev/<project>/<repository>; null unless image_builds."
  value       = local.image_build_repository
}

output "image_build_service_account" {
  description = "Email of the service account image builds run as (a queue's builder.service_account); null unless image_builds."
  value       = one(google_service_account.build[*].email)
}

output "monitoring_metrics" {
  description = "Cloud Monitoring metric types of the queue signals (logging.googleapis.com/user/<prefix>/...), keyed by short name; empty unless enable_monitoring."
  value       = { for key, metric in google_logging_metric.queue : key => "logging.googleapis.com/user/${metric.name}" }
}

output "monitoring_dashboard" {
  description = "Id of the Cloud Monitoring dashboard \"launchq queues (<prefix>)\" (projects/NUMBER/dashboards/ID), or null unless enable_monitoring."
  value       = one(google_monitoring_dashboard.queues[*].id)
}
