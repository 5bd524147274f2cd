# Topics and subscriptions.
#
# A topic per queue (var.queues): publisher on a queue's topic is what lets someone launch onto
# that queue. The shared <prefix>-items topic exists only when var.shared_items_topic is true.
#
# The dispatcher (and the notify function, on the events topic) is fed by an explicit push
# subscription instead of the function's Eventarc trigger (event_trigger). Both deliver the same message to the same code, but with
# event_trigger Eventarc creates the subscription itself under a name that is not known in
# advance and the google provider exposes neither its name nor a dead-letter setting, so the
# dead-letter policy, the backoff and the service agent's subscriber grant could not be
# declared here. With our own subscription every one of them is in code. The function's
# @functions_framework.cloud_event decorator turns the raw push envelope into the same
# messagePublished CloudEvent Eventarc would deliver (tests/terraform checks this on the
# packaged archive).

# One topic per queue, launchq-q-<queue> (the CLI derives the same name from the queue name, so
# name_prefix does not apply). Publishing to it is launching onto that queue, or cancelling on
# it: roles/pubsub.publisher on this topic alone is the gate (iam.tf).
resource "google_pubsub_topic" "queue" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest. Items carry job specs and metadata, no secrets; CMEK needs a KMS key, key rotation and service-agent grants a deployer opts into, not a module default.
  for_each = var.queues

  project = var.project_id
  name    = "${local.queue_topic_prefix}${each.key}"
  labels  = local.labels

  depends_on = [google_project_service.required]
}

# The single shared topic every queue can be launched onto (today's behaviour before per-queue
# topics): only when var.shared_items_topic opts in, for single-team installs.
resource "google_pubsub_topic" "items" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest. Items carry job specs and metadata, no secrets; CMEK needs a KMS key, key rotation and service-agent grants a deployer opts into, not a module default.
  count = var.shared_items_topic ? 1 : 0

  project = var.project_id
  name    = "${var.name_prefix}-items"
  labels  = local.labels

  depends_on = [google_project_service.required]
}

resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest. Items carry job specs and metadata, no secrets; CMEK needs a KMS key, key rotation and service-agent grants a deployer opts into, not a module default.
  project = var.project_id
  name    = "${var.name_prefix}-events"
  labels  = local.labels

  depends_on = [google_project_service.required]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest. Items carry job specs and metadata, no secrets; CMEK needs a KMS key, key rotation and service-agent grants a deployer opts into, not a module default.
  project = var.project_id
  name    = "${var.name_prefix}-dead-letter"
  labels  = local.labels

  depends_on = [google_project_service.required]
}

# A dead-letter topic without a subscription drops what it receives: this one keeps
# dead-lettered queue items for 7 days for inspection and replay
# (gcloud pubsub subscriptions pull <prefix>-dead-letter-sub).
resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = "${var.name_prefix}-dead-letter-sub"
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = "" # never expires, however quiet the queue
  }
}

# The dispatcher's trigger, one push subscription per topic above (a queue's topic, and the
# shared topic when enabled). One resource for all of them, so every topic is pushed with the
# same OIDC identity, backoff and dead-letter policy by construction. Every item is pushed, with
# an OIDC token of the push service account, to the dispatch function. A non-2xx answer (the
# function raises only for transient errors) is a nack: Pub/Sub retries with exponential
# backoff and after dispatch_max_delivery_attempts forwards the message to the dead-letter
# topic.
resource "google_pubsub_subscription" "dispatch" {
  for_each = local.dispatch_topics

  project = var.project_id
  name    = each.value.subscription
  topic   = each.value.topic
  labels  = local.labels

  # For push, the ack deadline is also the request timeout: as long as the function may run.
  ack_deadline_seconds       = var.dispatch_timeout_seconds
  message_retention_duration = "604800s"

  push_config {
    # The topic path in the URL becomes the CloudEvent's source in functions-framework.
    push_endpoint = "${google_cloudfunctions2_function.dispatch.service_config[0].uri}/${each.value.topic}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.dispatch.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "${var.dispatch_retry_backoff_seconds.minimum}s"
    maximum_backoff = "${var.dispatch_retry_backoff_seconds.maximum}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.dispatch_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.dispatch_invoker,
    google_service_account_iam_member.push_token_creator,
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}

# Installs from before per-queue topics had one unkeyed subscription on the shared topic; with
# shared_items_topic = true they keep it (same name) instead of recreating it.
moved {
  from = google_pubsub_subscription.dispatch
  to   = google_pubsub_subscription.dispatch["_shared"]
}

# The notify function's trigger: a push subscription on the events topic, made here for the
# reasons the dispatcher's is (see the top of this file): its name, backoff and dead-letter
# policy are declared, not left to Eventarc. Every event is pushed, with an OIDC token of the
# push service account, to the notify function, which keeps final outcomes and "waited too
# long" notices and acknowledges the rest at once.
#
# Backoff: a receiver that failed makes the function answer 500 (a nack); Pub/Sub redelivers
# with exponential backoff from 10 s to 600 s, and that redelivery is the notification's retry.
# After 5 attempts the function records the notification UNDELIVERED (on the item too) and
# acknowledges the event (launchq.model.notices.MAX_ATTEMPTS). The dead-letter policy is for
# what the function cannot handle at all (Firestore unavailable for long, a bug): after
# notify_max_delivery_attempts (more than those 5) the event goes to the dead-letter topic,
# where it is kept 7 days and the dead-letter alert (monitoring.tf) fires, instead of being
# redelivered every 10 minutes for the 7 days of retention.
resource "google_pubsub_subscription" "notify" {
  project = var.project_id
  name    = "${var.name_prefix}-notify"
  topic   = google_pubsub_topic.events.id
  labels  = local.labels

  # Only what the function acts on: final outcomes and "waited too long" notices (the events'
  # `state` attribute, launchq.gcp.events), about one event in five of an item's life; the
  # rest would be invocations that acknowledge at once. A filter cannot change once created.
  filter = join(" OR ", [for state in local.notify_states : "attributes.state = \"${state}\""])

  # For push, the ack deadline is also the request timeout: as long as the function may run.
  ack_deadline_seconds       = var.notify_timeout_seconds
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.notify.service_config[0].uri}/${google_pubsub_topic.events.id}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.notify.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.notify_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.notify_invoker,
    google_service_account_iam_member.push_token_creator,
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}
