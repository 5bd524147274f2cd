output "queue_topic" {
  description = "Topic queue items are published to (LAUNCHQ_QUEUE_TOPIC)."
  value       = google_pubsub_topic.items.name
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

output "dispatch_subscription" {
  description = "Push subscription that feeds the dispatch function."
  value       = google_pubsub_subscription.dispatch.name
}

output "dispatch_function_url" {
  description = "URL of the dispatch function (internal ingress; invokable only by the push service account)."
  value       = google_cloudfunctions2_function.dispatch.service_config[0].uri
}

output "sweep_function_url" {
  description = "URL of the sweep function (internal ingress; invokable only by the scheduler service account)."
  value       = google_cloudfunctions2_function.sweep.service_config[0].uri
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
  description = "A gcloud command that publishes one queue item (replace queue and image)."
  value       = <<-EOT
    gcloud pubsub topics publish ${google_pubsub_topic.items.name} --project=${var.project_id} \
      --attribute=item_id=first-run-001,queue=default \
      --message='{"queue": "default", "item_id": "first-run-001", "image_uri": "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest", "command": ["python", "-c", "print(42)"]}'
  EOT
}
