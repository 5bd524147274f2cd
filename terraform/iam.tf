# Service accounts and every IAM grant launchq makes. No primitive role, no allUsers or
# allAuthenticatedUsers, and every grant is on the narrowest resource that works: a topic, a
# subscription, a Cloud Run service, a service account, a secret, a bucket (with an
# object-prefix condition). Only the Vertex AI custom roles, Firestore's datastore.user, the
# notify function's logging.viewer and (opt-in) the quota reader are granted on the project
# (none has a narrower resource).

resource "google_service_account" "dispatch" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-dispatch"
  display_name = "launchq dispatcher"
  description  = "Runtime identity of the launchq dispatch function."
}

resource "google_service_account" "sweep" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-sweep"
  display_name = "launchq sweeper"
  description  = "Runtime identity of the launchq sweep function."
}

resource "google_service_account" "notify" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-notify"
  display_name = "launchq notifier"
  description  = "Runtime identity of the launchq notify function: reads items and their jobs' logs, reads the notification rules' secrets, publishes to their topics."
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "launchq sweep invoker"
  description  = "Cloud Scheduler's OIDC identity; may invoke the sweep function and nothing else."
}

resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-push"
  display_name = "launchq push invoker"
  description  = "Pub/Sub push OIDC identity; may invoke the dispatch and notify functions and nothing else."
}

resource "google_service_account" "job" {
  count = var.create_job_service_account ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-job"
  display_name = "launchq default job runtime"
  description  = "Identity Vertex AI jobs can run as. Holds no roles from this module: grant it what the training code needs."
}

# --- Vertex AI: exactly the CustomJob permissions each function uses -------------------------
# roles/aiplatform.user would also grant models, endpoints, datasets, pipelines, notebooks...

resource "google_project_iam_custom_role" "dispatch" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_dispatcher"
  title       = "launchq dispatcher"
  description = "Create Vertex AI custom jobs and look them up by label (idempotent submit); cancel them on a cancel message from the queue's topic."
  # cancel: a researcher cancels by publishing a control message to the queue's topic, and the
  # dispatcher sends CancelCustomJob with its own identity (researchers hold no Vertex role).
  # cloudbuild.builds.*: images built from source (image_builds.tf); update is what cancels.
  permissions = [
    "aiplatform.customJobs.cancel",
    "aiplatform.customJobs.create",
    "aiplatform.customJobs.get",
    "aiplatform.customJobs.list",
    "cloudbuild.builds.create",
    "cloudbuild.builds.get",
    "cloudbuild.builds.list",
    "cloudbuild.builds.update",
  ]
}

resource "google_project_iam_custom_role" "sweep" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_sweeper"
  title       = "launchq sweeper"
  description = "Follow, cancel and (when it admits waiting items into freed slots) create Vertex AI custom jobs."
  # cloudbuild.builds.*: images built from source (image_builds.tf); update is what cancels.
  permissions = [
    "aiplatform.customJobs.cancel",
    "aiplatform.customJobs.create",
    "aiplatform.customJobs.get",
    "aiplatform.customJobs.list",
    "cloudbuild.builds.create",
    "cloudbuild.builds.get",
    "cloudbuild.builds.list",
    "cloudbuild.builds.update",
  ]
}

locals {
  # Maps with fixed keys (not sets): a custom role's name is only known after apply, and
  # for_each keys must be known at plan time.
  dispatch_project_roles = {
    vertex    = google_project_iam_custom_role.dispatch.name # projects/P/roles/<prefix>_dispatcher
    firestore = "roles/datastore.user"                       # read/write items/ and queues/
  }
  sweep_project_roles = {
    vertex    = google_project_iam_custom_role.sweep.name
    firestore = "roles/datastore.user"
  }
  # The notify function: items, queue configs and its delivery records (notices/) in Firestore,
  # and a failed job's last log lines from Cloud Logging (entries.list; logging.viewer is the
  # narrowest predefined role with logging.logEntries.list, and log entries have no resource
  # narrower than the project to grant on). No Vertex role: it reads the item's record only.
  notify_project_roles = {
    firestore = "roles/datastore.user"
    logs      = "roles/logging.viewer"
  }

  # Service accounts Vertex jobs may run as; the functions get act-as on these only. The
  # default account's email is spelled out (not read from the resource) so the for_each keys
  # below are known at plan time.
  default_job_service_account = "${var.name_prefix}-job@${var.project_id}.iam.gserviceaccount.com"
  job_service_accounts = toset(concat(
    var.job_service_accounts,
    flatten([for queue in values(var.queues) : queue.job_service_accounts]),
    var.create_job_service_account ? [local.default_job_service_account] : [],
  ))
  job_act_as = {
    for pair in setproduct(tolist(local.job_service_accounts), ["dispatch", "sweep"]) :
    "${pair[1]}:${pair[0]}" => { job = pair[0], function = pair[1] }
  }
  # W&B API keys (docs/wandb.md): each queue's job accounts may read its key's secret, nobody
  # else (the functions never read it). One grant per (queue, account).
  wandb_secret_access = merge({}, [
    for queue, settings in var.queues : {
      for email in settings.job_service_accounts :
      "${queue}:${email}" => { secret = settings.wandb_api_key_secret, member = "serviceAccount:${email}" }
    } if settings.wandb_api_key_secret != null
  ]...)
  function_members = {
    dispatch = google_service_account.dispatch.member
    sweep    = google_service_account.sweep.member
  }
}

# Cohorts with `read_quotas` (docs/cohorts.md): the sweep reads each quota's enforced limit from
# the Cloud Quotas API. One permission, on the project (quotas have no narrower resource), and
# only when asked for: roles/cloudquotas.viewer would also grant quota preferences.
resource "google_project_iam_custom_role" "sweep_quotas" {
  count = var.read_cohort_quotas ? 1 : 0

  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_quota_reader"
  title       = "launchq quota reader"
  description = "Read Vertex AI quota limits from the Cloud Quotas API (cohorts with read_quotas)."
  permissions = ["cloudquotas.quotas.get"]
}

resource "google_project_iam_member" "sweep_quotas" {
  count = var.read_cohort_quotas ? 1 : 0

  project = var.project_id
  role    = google_project_iam_custom_role.sweep_quotas[0].name
  member  = google_service_account.sweep.member
}

resource "google_project_iam_member" "dispatch" {
  for_each = local.dispatch_project_roles

  project = var.project_id
  role    = each.value
  member  = google_service_account.dispatch.member
}

resource "google_project_iam_member" "sweep" {
  for_each = local.sweep_project_roles

  project = var.project_id
  role    = each.value
  member  = google_service_account.sweep.member
}

resource "google_project_iam_member" "notify" {
  for_each = local.notify_project_roles

  project = var.project_id
  role    = each.value
  member  = google_service_account.notify.member
}

# Creating a CustomJob whose spec names a service account needs iam.serviceAccounts.actAs on
# that account (roles/iam.serviceAccountUser), granted on each job account, not the project:
# the accounts of var.job_service_accounts, of every queue in var.queues, and the default one.
# Researchers never get it: the dispatcher submits the job with its own identity.
resource "google_service_account_iam_member" "job_act_as" {
  for_each = local.job_act_as

  service_account_id = "projects/${var.project_id}/serviceAccounts/${each.value.job}"
  role               = "roles/iam.serviceAccountUser"
  member             = local.function_members[each.value.function]

  depends_on = [google_service_account.job]
}

# --- Pub/Sub ---------------------------------------------------------------------------------

# Both functions publish state-change CloudEvents to the events topic (REST :publish).
resource "google_pubsub_topic_iam_member" "events_publisher" {
  for_each = local.function_members

  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# Dead-lettering: the Pub/Sub service agent publishes the failed message to the dead-letter
# topic and acknowledges it on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent

  depends_on = [google_project_service.required]
}

# On every dispatch subscription (one per queue topic, and the shared one), and on the notify
# function's subscription.
resource "google_pubsub_subscription_iam_member" "dispatch_subscriber" {
  for_each = local.dispatch_topics

  project      = var.project_id
  subscription = google_pubsub_subscription.dispatch[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

moved {
  from = google_pubsub_subscription_iam_member.dispatch_subscriber
  to   = google_pubsub_subscription_iam_member.dispatch_subscriber["_shared"]
}

resource "google_pubsub_subscription_iam_member" "notify_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.notify.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Authenticated push: the service agent mints the OIDC token of the push account. Needed for
# projects that enabled Pub/Sub before 2021-04-08; granted on this one account only.
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent

  depends_on = [google_project_service.required]
}

# --- Invokers: each function's Cloud Run service, one caller each ----------------------------

resource "google_cloud_run_v2_service_iam_member" "dispatch_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.dispatch.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

resource "google_cloud_run_v2_service_iam_member" "notify_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.notify.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

resource "google_cloud_run_v2_service_iam_member" "sweep_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.sweep.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

# --- Who may launch onto which queue ---------------------------------------------------------
# Launching onto a queue, and cancelling an item of it, is publishing to the queue's topic:
# roles/pubsub.publisher on that one topic, never on the project (a project-level publisher
# could launch onto every queue). The dispatcher acts on the message with its own credentials,
# so publishers need neither Vertex AI nor Firestore write access.

locals {
  queue_publishers = merge([
    for queue, spec in var.queues : {
      for member in toset(spec.publishers) : "${queue} ${member}" => { queue = queue, member = member }
    }
  ]...)

  # Everyone who may publish to some queue may read launchq's state (read-only).
  state_viewers = toset(flatten([for spec in values(var.queues) : spec.publishers]))
}

resource "google_pubsub_topic_iam_member" "queue_publisher" {
  for_each = local.queue_publishers

  project = var.project_id
  topic   = google_pubsub_topic.queue[each.value.queue].name
  role    = "roles/pubsub.publisher"
  member  = each.value.member
}

# roles/datastore.viewer for `launchq status/ls/watch`. Firestore has no resource narrower than
# a database to grant on; the condition keeps the grant to launchq's database when the project
# has others.
resource "google_project_iam_member" "state_viewer" {
  for_each = var.grant_publishers_state_viewer ? local.state_viewers : toset([])

  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = each.value

  condition {
    title       = "launchq state only"
    description = "Read-only access to the Firestore database launchq keeps its state in."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database}\""
  }
}

# --- Cloud Storage: source archives ----------------------------------------------------------
# Source jobs run an archive from gs://<staging bucket>/launchq/sources/<sha256>.tar.gz. The
# dispatcher reads the object's metadata once per source item (is it there, is it the archive the
# item names); the job reads the object to pip-install it. Both need storage.objects.get and
# nothing else: a custom role with that one permission (roles/storage.objectViewer would add
# objects.list), granted on each staging bucket with a condition on the object prefix, so
# neither identity can read the rest of the bucket (outputs, other teams' data). Writing the
# job's outputs is the job account's own grant, made by whoever owns the bucket.

resource "google_project_iam_custom_role" "source_reader" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_source_reader"
  title       = "launchq source reader"
  description = "Read a source archive (object metadata and bytes) under launchq/sources/; granted per bucket with a prefix condition."
  permissions = ["storage.objects.get"]
}

locals {
  source_prefix = "launchq/sources/"
  source_readers = merge(
    {
      for bucket in var.staging_buckets : "dispatch ${bucket}" => {
        bucket = bucket
        member = google_service_account.dispatch.member
      }
    },
    {
      for pair in setproduct(var.staging_buckets, tolist(local.job_service_accounts)) :
      "job ${pair[0]} ${pair[1]}" => { bucket = pair[0], member = "serviceAccount:${pair[1]}" }
    },
    # The image builds' service account fetches the source it builds (image_builds.tf).
    {
      for bucket in var.staging_buckets : "build ${bucket}" => {
        bucket = bucket
        member = "serviceAccount:${local.image_build_account_email}"
      } if var.image_builds
    },
  )
}

resource "google_storage_bucket_iam_member" "source_reader" {
  for_each = local.source_readers

  bucket = each.value.bucket
  role   = google_project_iam_custom_role.source_reader.name
  member = each.value.member

  condition {
    title       = "launchq sources only"
    description = "Objects under launchq/sources/ of this bucket only."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${each.value.bucket}/objects/${local.source_prefix}\")"
  }

  depends_on = [google_service_account.job, google_service_account.build]
}

# A queue's W&B API key: read at job start by the bootstrap (launchq.spec.bootstrap) with the job's
# own service account; granted on the secret, never the project.
resource "google_secret_manager_secret_iam_member" "wandb_key" {
  for_each = local.wandb_secret_access

  project   = split("/", each.value.secret)[1]
  secret_id = split("/", each.value.secret)[3]
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}

# --- The notify function: the queues' notification rules' secrets and topics -----------------
# A rule names Secret Manager versions (a Slack webhook URL, a webhook's URL and signing key)
# and Pub/Sub topics; the queue's entry in var.queues lists them (notify_secrets,
# notify_topics). The notify function's account may read exactly those secrets and publish to
# exactly those topics: granted on each secret and topic, never on a project, and nothing at
# all when no queue lists any. Nobody else gets these grants from the module.

locals {
  # projects/P/secrets/S, from a version name (projects/P/secrets/S/versions/V) or a secret's.
  notify_secret_names = toset(flatten([
    for queue in values(var.queues) : [
      for secret in queue.notify_secrets : join("/", slice(split("/", secret), 0, 4))
    ]
  ]))
  notify_topic_names = toset(flatten([for queue in values(var.queues) : queue.notify_topics]))
}

resource "google_secret_manager_secret_iam_member" "notify_secrets" {
  for_each = local.notify_secret_names

  project   = split("/", each.value)[1]
  secret_id = split("/", each.value)[3]
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.notify.member
}

resource "google_pubsub_topic_iam_member" "notify_publisher" {
  for_each = local.notify_topic_names

  project = split("/", each.value)[1]
  topic   = split("/", each.value)[3]
  role    = "roles/pubsub.publisher"
  member  = google_service_account.notify.member
}
