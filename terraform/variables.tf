# Inputs of the launchq module. Every variable has a type, a description and, where a wrong
# value would only fail at apply time (or worse, at run time), a validation.

variable "project_id" {
  type        = string
  description = "Project that holds launchq: its topics, functions, Firestore database, scheduler job and service accounts. Vertex AI jobs are created in this project too."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 lowercase letters, digits, hyphens), not a project number or name."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the Cloud Scheduler job and the source bucket, e.g. us-central1."
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west4."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of resource names: topics <prefix>-events, <prefix>-dead-letter (and <prefix>-items when shared_items_topic is true); subscriptions <prefix>-dispatch-q-<queue>; service accounts <prefix>-dispatch, <prefix>-sweep, ... Not of the queue topics, always launchq-q-<queue> (the CLI derives them from the queue name). Keep it short: service account ids are limited to 30 characters."
  default     = "launchq"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-16 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that supports them."
  default     = {}
}

variable "enable_apis" {
  type        = bool
  description = "Enable the APIs launchq needs (Cloud Functions, Cloud Run, Eventarc, Pub/Sub, Cloud Scheduler, Firestore, Vertex AI, Cloud Build, Artifact Registry, IAM, Storage). Set to false when a platform team manages APIs."
  default     = true
}

# --- Firestore -------------------------------------------------------------------------------

variable "create_firestore_database" {
  type        = bool
  description = "Create the Firestore (native mode) database. Leave false when the project already has it (a project's (default) database can only be created once)."
  default     = false
}

variable "firestore_database" {
  type        = string
  description = "Firestore database id launchq uses (LAUNCHQ_FIRESTORE_DATABASE). \"(default)\" or a named database."
  default     = "(default)"

  validation {
    condition     = var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be \"(default)\" or 4-63 lowercase letters, digits and hyphens starting with a letter."
  }
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database when create_firestore_database is true: a region (us-central1) or multi-region (nam5, eur3). null uses var.region."
  default     = null

  validation {
    condition     = var.firestore_location == null || can(regex("^[a-z0-9-]+$", var.firestore_location))
    error_message = "firestore_location must be a Firestore location id such as nam5, eur3 or us-central1."
  }
}

variable "firestore_delete_protection" {
  type        = bool
  description = "Turn on delete protection for a database this module creates; a `terraform destroy` then leaves it in place (the provider abandons it)."
  default     = true
}

variable "firestore_point_in_time_recovery" {
  type        = bool
  description = "Enable point-in-time recovery (7 days of versions, billed as storage) for a database this module creates."
  default     = false
}

# --- Functions -------------------------------------------------------------------------------

variable "python_runtime" {
  type        = string
  description = "Cloud Functions runtime of the three functions (dispatch, sweep, notify). The archives' requirements.txt is pinned from the project's venv; python311 matches the interpreter the packaging test runs."
  default     = "python311"

  validation {
    condition     = contains(["python311", "python312", "python313"], var.python_runtime)
    error_message = "python_runtime must be python311, python312 or python313 (launchq needs Python 3.11+)."
  }
}

variable "function_archives_dir" {
  type        = string
  description = "Directory holding dispatch.zip, sweep.zip and notify.zip built by `make package`. null means build/functions at the repository root (the module's parent directory)."
  default     = null
}

variable "build_service_account" {
  type        = string
  description = "Email of the service account Cloud Build uses to build the functions. null keeps the project's default build service account."
  default     = null

  validation {
    condition     = var.build_service_account == null || can(regex("^[a-z0-9-]+@[a-z0-9-]+\\.iam\\.gserviceaccount\\.com$", var.build_service_account))
    error_message = "build_service_account must be a service account email."
  }
}

variable "dispatch_timeout_seconds" {
  type        = number
  description = "Timeout of the dispatch function. It only renders and submits (no polling), so minutes are plenty. Also the push subscription's ack deadline. Must stay below submit_lease_seconds."
  default     = 300

  validation {
    condition     = var.dispatch_timeout_seconds >= 10 && var.dispatch_timeout_seconds <= 540 && floor(var.dispatch_timeout_seconds) == var.dispatch_timeout_seconds
    error_message = "dispatch_timeout_seconds must be a whole number from 10 to 540 (the event-function limit, and below Pub/Sub's 600 s ack deadline)."
  }
}

variable "dispatch_memory" {
  type        = string
  description = "Memory of the dispatch function, e.g. 512Mi or 1Gi."
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.dispatch_memory))
    error_message = "dispatch_memory must look like 256Mi, 512Mi or 1Gi."
  }
}

variable "dispatch_max_instances" {
  type        = number
  description = "Upper bound of concurrent dispatch instances (each handles one message at a time). Slots in Firestore, not this number, bound the number of jobs."
  default     = 20

  validation {
    condition     = var.dispatch_max_instances >= 1 && var.dispatch_max_instances <= 1000
    error_message = "dispatch_max_instances must be between 1 and 1000."
  }
}

variable "dispatch_max_delivery_attempts" {
  type        = number
  description = "Deliveries of one message to the dispatcher before Pub/Sub moves it to the dead-letter topic."
  default     = 10

  validation {
    condition     = var.dispatch_max_delivery_attempts >= 5 && var.dispatch_max_delivery_attempts <= 100
    error_message = "dispatch_max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "dispatch_retry_backoff_seconds" {
  type = object({
    minimum = number
    maximum = number
  })
  description = "Exponential backoff between redeliveries of a message the dispatcher failed (a transient error). Same range as Eventarc's retries by default."
  default = {
    minimum = 10
    maximum = 600
  }

  validation {
    condition     = var.dispatch_retry_backoff_seconds.minimum >= 0 && var.dispatch_retry_backoff_seconds.maximum <= 600 && var.dispatch_retry_backoff_seconds.minimum <= var.dispatch_retry_backoff_seconds.maximum
    error_message = "dispatch_retry_backoff_seconds needs 0 <= minimum <= maximum <= 600."
  }
}

variable "sweep_timeout_seconds" {
  type        = number
  description = "Timeout of the sweep function; the scheduler's attempt deadline is set to the same value. Must stay below submit_lease_seconds, because the sweep submits jobs too."
  default     = 300

  validation {
    condition     = var.sweep_timeout_seconds >= 15 && var.sweep_timeout_seconds <= 1800 && floor(var.sweep_timeout_seconds) == var.sweep_timeout_seconds
    error_message = "sweep_timeout_seconds must be a whole number from 15 to 1800 (Cloud Scheduler's attempt deadline range for HTTP targets)."
  }
}

variable "sweep_memory" {
  type        = string
  description = "Memory of the sweep function, e.g. 512Mi or 1Gi."
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.sweep_memory))
    error_message = "sweep_memory must look like 256Mi, 512Mi or 1Gi."
  }
}

variable "sweep_schedule" {
  type        = string
  description = "Unix-cron schedule of the sweep (Cloud Scheduler's finest resolution is one minute)."
  default     = "* * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.sweep_schedule))) == 5
    error_message = "sweep_schedule must be a five-field unix-cron expression such as \"* * * * *\"."
  }
}

variable "sweep_time_zone" {
  type        = string
  description = "Time zone the sweep schedule is read in (tz database name)."
  default     = "Etc/UTC"
}

# --- Runtime settings (the LAUNCHQ_* environment of the functions) ----------------------------

variable "submit_lease_seconds" {
  type        = number
  description = "LAUNCHQ_SUBMIT_LEASE_SECONDS: how long a claimed item belongs to one submitter. Must be greater than both function timeouts, or a slow but live submitter could be overtaken and a second job created."
  default     = 600

  validation {
    condition     = var.submit_lease_seconds > 0
    error_message = "submit_lease_seconds must be positive."
  }
}

variable "queue_cache_seconds" {
  type        = number
  description = "LAUNCHQ_QUEUE_CACHE_SECONDS: how long a function instance caches a queue config."
  default     = 10

  validation {
    condition     = var.queue_cache_seconds >= 0
    error_message = "queue_cache_seconds must not be negative."
  }
}

variable "vertex_timeout_seconds" {
  type        = number
  description = "LAUNCHQ_VERTEX_TIMEOUT_SECONDS: per-request timeout of Vertex AI calls."
  default     = 30

  validation {
    condition     = var.vertex_timeout_seconds > 0 && var.vertex_timeout_seconds <= 300
    error_message = "vertex_timeout_seconds must be in (0, 300]."
  }
}

variable "vertex_endpoint" {
  type        = string
  description = "LAUNCHQ_VERTEX_ENDPOINT: base URL of Vertex AI. null (the right value in production) leaves it unset, so each job's region picks https://{region}-aiplatform.googleapis.com."
  default     = null

  validation {
    condition     = var.vertex_endpoint == null || can(regex("^https?://", var.vertex_endpoint))
    error_message = "vertex_endpoint must be an http(s) URL or null."
  }
}

variable "storage_endpoint" {
  type        = string
  description = "LAUNCHQ_STORAGE_ENDPOINT: base URL of the Cloud Storage JSON API the dispatcher checks source archives with. null (the right value in production) means https://storage.googleapis.com."
  default     = null

  validation {
    condition     = var.storage_endpoint == null || can(regex("^https?://", var.storage_endpoint))
    error_message = "storage_endpoint must be an http(s) URL or null."
  }
}

# --- Queues and who may launch onto them ----------------------------------------------------

variable "queues" {
  type = map(object({
    publishers           = optional(list(string), [])
    job_service_accounts = optional(list(string), [])
    wandb_api_key_secret = optional(string)
    notify_secrets       = optional(list(string), [])
    notify_topics        = optional(list(string), [])
  }))
  description = <<-EOT
    Queues and who may launch onto each, keyed by queue name (the `name` of its queue config).
    Each queue gets the topic launchq-q-<queue>, a push subscription feeding it to the
    dispatcher, and roles/pubsub.publisher on that topic for each of `publishers` (IAM members:
    user:..., group:... or serviceAccount:...). Publishing is what lets a person, group or CI
    account launch onto the queue and cancel on it. `job_service_accounts` are the emails the
    queue's config runs Vertex jobs as; the dispatcher and the sweeper may act as exactly those
    (plus var.job_service_accounts and the default job account). `wandb_api_key_secret`
    (projects/P/secrets/S) is the secret of the queue's `wandb.api_key_secret`: its
    job_service_accounts, and nobody else, get roles/secretmanager.secretAccessor on it.
    `notify_secrets` are the Secret Manager secrets the queue's `notify` rules name (a Slack
    webhook_secret, a webhook's url_secret and signing_key_secret), as versions
    (projects/P/secrets/S/versions/V, as in the config) or secrets (projects/P/secrets/S):
    the notify function's account, and nobody else, gets roles/secretmanager.secretAccessor on
    each secret. `notify_topics` are the topics of its `pubsub` rules (projects/P/topics/T):
    the notify function's account gets roles/pubsub.publisher on each of them only.
  EOT
  default     = {}

  # launchq's own queue-name rule: QUEUE_NAME_PATTERN in shared/launchq/spec/config.py (a test
  # checks the two stay equal).
  validation {
    condition     = alltrue([for name in keys(var.queues) : can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", name))])
    error_message = "Each queue name must be 1-100 letters, digits, '.', '_' or '-' and start with a letter or digit (launchq's queue-name rule)."
  }

  # Pub/Sub's topic-name rule applied to launchq-q-<queue>: 3-255 characters, starting with a
  # letter, from [A-Za-z0-9-_.~+%], not starting with "goog". Every name the rule above allows
  # passes (tests/terraform/test_queues.py proves it); this keeps the plan failing, not the
  # apply, should the queue-name rule ever be widened.
  validation {
    condition     = alltrue([for name in keys(var.queues) : can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$", "launchq-q-${name}")) && !startswith(lower("launchq-q-${name}"), "goog")])
    error_message = "Each queue name must form a valid Pub/Sub topic name launchq-q-<queue>: at most 245 characters from letters, digits and - _ . ~ + %."
  }

  validation {
    condition = alltrue(flatten([
      for queue in values(var.queues) : [
        for member in queue.publishers : can(regex("^(user|group|serviceAccount):[^@\\s:]+@[^@\\s]+\\.[a-z]+$", member))
      ]
    ]))
    error_message = "publishers must be IAM members of the form user:EMAIL, group:EMAIL or serviceAccount:EMAIL: named principals, never everyone or a whole domain."
  }

  validation {
    condition = alltrue(flatten([
      for queue in values(var.queues) : [
        for email in queue.job_service_accounts : can(regex("^[a-z][a-z0-9-]*@[a-z0-9-]+\\.iam\\.gserviceaccount\\.com$", email))
      ]
    ]))
    error_message = "job_service_accounts of a queue must be service account emails (...@PROJECT.iam.gserviceaccount.com), without the serviceAccount: prefix."
  }

  validation {
    condition = alltrue([
      for queue in values(var.queues) :
      queue.wandb_api_key_secret == null || can(regex("^projects/[a-z0-9-]+/secrets/[A-Za-z0-9_-]{1,255}$", queue.wandb_api_key_secret))
    ])
    error_message = "wandb_api_key_secret is a secret's name, projects/PROJECT/secrets/SECRET (no version): the queue's job accounts may read its versions."
  }

  validation {
    condition = alltrue([
      for queue in values(var.queues) :
      queue.wandb_api_key_secret == null || length(queue.job_service_accounts) > 0
    ])
    error_message = "a queue with wandb_api_key_secret lists the job_service_accounts its jobs run as: only they may read the key."
  }

  # A notify rule names secret versions (launchq.spec.wandb.SECRET_VERSION_PATTERN); the grant
  # is on the secret, so the version part is optional here.
  validation {
    condition = alltrue(flatten([
      for queue in values(var.queues) : [
        for secret in queue.notify_secrets : can(regex("^projects/[^/\\s]+/secrets/[A-Za-z0-9_-]{1,255}(/versions/(latest|[0-9]+))?$", secret))
      ]
    ]))
    error_message = "notify_secrets are secret versions (projects/P/secrets/S/versions/V) or secrets (projects/P/secrets/S), as the queue's notify rules name them."
  }

  # The very pattern a notify rule's pubsub.topic must match (launchq.spec.notify.TOPIC_PATTERN;
  # tests/terraform/test_queues.py checks the two stay equal).
  validation {
    condition = alltrue(flatten([
      for queue in values(var.queues) : [
        for topic in queue.notify_topics : can(regex("^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][A-Za-z0-9._~+%-]{2,254}$", topic))
      ]
    ]))
    error_message = "notify_topics are topic names, projects/PROJECT/topics/TOPIC, as the queue's pubsub notify rules name them."
  }
}

variable "shared_items_topic" {
  type        = bool
  description = "Also create the single shared topic <prefix>-items (and its push subscription) that every queue can be launched onto: the pre-per-queue behaviour, for single-team installs. Anyone with publisher on it may launch onto any queue, so it is off by default and grants nobody anything."
  default     = false
}

variable "grant_publishers_state_viewer" {
  type        = bool
  description = "Grant every queue publisher roles/datastore.viewer on launchq's Firestore database (an IAM condition on the database name), so `launchq status/ls/watch` work for them. Read-only: it reads every queue's items, not only their own queues'."
  default     = true
}

# --- Vertex AI jobs --------------------------------------------------------------------------

variable "job_service_accounts" {
  type        = list(string)
  description = "Emails of the service accounts queue configs run Vertex jobs as (CustomJob serviceAccount). The dispatcher and the sweeper may act as exactly these (plus the optional default job account) and no other."
  default     = []

  validation {
    condition     = alltrue([for email in var.job_service_accounts : can(regex("^[^@\\s]+@[a-z0-9-]+\\.iam\\.gserviceaccount\\.com$", email))])
    error_message = "job_service_accounts must be service account emails (...@PROJECT.iam.gserviceaccount.com)."
  }
}

variable "create_job_service_account" {
  type        = bool
  description = "Create <prefix>-job, a service account with no roles for Vertex jobs to run as (grant it what your training code reads and writes). The functions may act as it."
  default     = true
}

# --- Staging buckets: where source jobs' archives live ----------------------------------------

variable "staging_buckets" {
  type        = list(string)
  description = <<-EOT
    Names (without gs://) of the queues' staging buckets: the bucket of each queue config's
    spec.base_output_dir, else spec.staging_bucket. Source archives must live there under
    launchq/sources/ (`launchq source push`). The dispatcher gets storage.objects.get on those
    objects (it checks each source item's archive), and every job service account gets the same
    (the job downloads the package). Both grants carry an IAM condition on the object prefix,
    which needs uniform bucket-level access on the bucket. Empty: no source jobs.
  EOT
  default     = []

  validation {
    condition     = alltrue([for name in var.staging_buckets : can(regex("^[a-z0-9][a-z0-9_.-]{1,220}[a-z0-9]$", name))])
    error_message = "staging_buckets must be bucket names without gs:// (lowercase letters, digits, -, _ and .)."
  }
}

# --- Source bucket ---------------------------------------------------------------------------

variable "source_bucket_name" {
  type        = string
  description = "Name of the bucket the function archives are uploaded to. null means <project_id>-<prefix>-functions."
  default     = null

  validation {
    condition     = var.source_bucket_name == null || can(regex("^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$", var.source_bucket_name))
    error_message = "source_bucket_name must be a valid bucket name (3-63 lowercase letters, digits, -, _ and .)."
  }
}

variable "source_bucket_force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the source bucket although it still holds archive versions. It only holds build inputs, so true by default."
  default     = true
}

variable "create_rate_per_minute" {
  type        = number
  description = "LAUNCHQ_CREATE_RATE_PER_MINUTE: CustomJob creates per minute per (project, region), shared by every dispatcher and sweep instance (Vertex allows 60 job-submission requests per minute per region). 0 turns the budget off."
  default     = 60

  validation {
    condition     = var.create_rate_per_minute >= 0 && floor(var.create_rate_per_minute) == var.create_rate_per_minute
    error_message = "create_rate_per_minute must be a whole number, 0 or more."
  }
}

variable "create_rates" {
  type        = map(number)
  description = "LAUNCHQ_CREATE_RATES: per-region overrides of create_rate_per_minute, e.g. { \"us-central1\" = 120 } after a quota increase."
  default     = {}

  validation {
    condition     = alltrue([for region, rate in var.create_rates : rate >= 0 && floor(rate) == rate && length(region) > 0])
    error_message = "create_rates maps region names to whole numbers of creates per minute, 0 or more."
  }
}

variable "quota_backoff_initial_seconds" {
  type        = number
  description = "LAUNCHQ_QUOTA_BACKOFF_INITIAL_SECONDS: how long a queue waits after Vertex refused a create for a resource quota (doubles per refusal in a row)."
  default     = 15
}

variable "quota_backoff_max_seconds" {
  type        = number
  description = "LAUNCHQ_QUOTA_BACKOFF_MAX_SECONDS: the longest a queue waits after quota refusals."
  default     = 240
}

variable "sweep_interval_seconds" {
  type        = number
  description = "LAUNCHQ_SWEEP_INTERVAL_SECONDS: pause between sweep passes within one invocation; freed slots are refilled within about this long."
  default     = 10

  validation {
    condition     = var.sweep_interval_seconds >= 0 && var.sweep_interval_seconds <= 60
    error_message = "sweep_interval_seconds must be from 0 (one pass per invocation) to 60."
  }
}

variable "sweep_busy_interval_seconds" {
  type        = number
  description = "LAUNCHQ_SWEEP_BUSY_INTERVAL_SECONDS: pause between sweep passes while items wait behind full capacity, so an ended job's slot and quota are refilled sooner."
  default     = 2

  validation {
    condition     = var.sweep_busy_interval_seconds > 0 && var.sweep_busy_interval_seconds <= 60
    error_message = "sweep_busy_interval_seconds must be above 0 and at most 60."
  }
}

variable "sweep_period_seconds" {
  type        = number
  description = "LAUNCHQ_SWEEP_PERIOD_SECONDS: the period of sweep_schedule in seconds (60 for the default every-minute schedule); one invocation loops until just before the next. Must be below sweep_timeout_seconds."
  default     = 60

  validation {
    condition     = var.sweep_period_seconds >= 60
    error_message = "sweep_period_seconds must be at least 60: Cloud Scheduler's finest schedule is one minute."
  }
}

# --- Dashboard -------------------------------------------------------------------------------

variable "dashboard" {
  type = object({
    enabled = optional(bool, false)
    image   = optional(string, "")
    members = optional(list(string), [])
  })
  description = "The read-only dashboard (`launchq ui`) as a Cloud Run service: enabled, the container image that has launchq installed, and the IAM members (user:, group:, serviceAccount:, domain:) who may open it (roles/run.invoker on the service only)."
  default     = { enabled = false, image = "", members = [] }

  validation {
    condition = alltrue([
      for member in var.dashboard.members : can(regex("^(user|group|serviceAccount|domain):.+$", member))
    ])
    error_message = "dashboard.members must be IAM members such as user:a@example.com or group:ml@example.com (no public principals: the dashboard shows every queue's items)."
  }
}

# --- Images built from source (docs/cloudbuild.md) ---------------------------------------------

variable "image_builds" {
  type        = bool
  description = "Let queues with a `builder` block build images from source with Cloud Build: a build service account, its grants, the functions' Cloud Build permissions and LAUNCHQ_BUILD_REPOSITORY."
  default     = false
}

variable "create_image_build_repository" {
  type        = bool
  description = "With image_builds: create the Artifact Registry repository image_build_repository_id. false uses an existing one of that id."
  default     = true
}

variable "image_build_repository_id" {
  type        = string
  description = "Artifact Registry repository (Docker) queues' builder.destination must be in: <location>-docker.pkg.dev/<project_id>/<this id>/IMAGE."
  default     = "launchq"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.image_build_repository_id))
    error_message = "image_build_repository_id must be 1-63 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "image_build_repository_location" {
  type        = string
  description = "Location of the build repository; null means var.region."
  default     = null

  validation {
    condition     = var.image_build_repository_location == null || can(regex("^[a-z]+(-[a-z]+[0-9]+)?$", var.image_build_repository_location))
    error_message = "image_build_repository_location must be a region (us-central1) or a multi-region (us, europe, asia)."
  }
}

variable "image_build_kms_key_name" {
  type        = string
  description = "Cloud KMS key that encrypts the created build repository (projects/P/locations/L/keyRings/R/cryptoKeys/K); null uses Google-managed encryption."
  default     = null
}

variable "cloudbuild_endpoint" {
  type        = string
  description = "Base URL of Cloud Build (LAUNCHQ_CLOUDBUILD_ENDPOINT); null means https://cloudbuild.googleapis.com."
  default     = null
}

variable "artifactregistry_endpoint" {
  type        = string
  description = "Base URL of Artifact Registry's API for tag lookups (LAUNCHQ_ARTIFACTREGISTRY_ENDPOINT); null means https://artifactregistry.googleapis.com."
  default     = null
}


variable "read_cohort_quotas" {
  type        = bool
  description = "Let the sweep read Vertex's enforced quota limits from the Cloud Quotas API for cohorts with read_quotas: true (docs/cohorts.md). Grants the sweep account cloudquotas.quotas.get on the project (a custom role with that one permission) and enables cloudquotas.googleapis.com when enable_apis is true."
  default     = false
}

variable "quota_read_seconds" {
  type        = number
  description = "LAUNCHQ_QUOTA_READ_SECONDS: how old a cohort's last read of its quotas from Cloud Quotas may be before the sweep reads them again."
  default     = 300

  validation {
    condition     = var.quota_read_seconds >= 60 && var.quota_read_seconds <= 86400
    error_message = "quota_read_seconds must be from 60 to 86400."
  }
}

variable "cloudquotas_endpoint" {
  type        = string
  description = "LAUNCHQ_CLOUDQUOTAS_ENDPOINT: base URL of the Cloud Quotas API. null (the right value in production) means https://cloudquotas.googleapis.com."
  default     = null

  validation {
    condition     = var.cloudquotas_endpoint == null || can(regex("^https?://", var.cloudquotas_endpoint))
    error_message = "cloudquotas_endpoint must be an http(s) URL or null."
  }
}

# --- Notifications: the notify function (docs/notifications.md) ------------------------------

variable "notify_timeout_seconds" {
  type        = number
  description = "Timeout of the notify function, and the ack deadline of its push subscription. One event sends at most one message per rule of the queue (10 s each at most), plus the secrets and a failed job's log lines it reads first."
  default     = 120

  validation {
    condition     = var.notify_timeout_seconds >= 10 && var.notify_timeout_seconds <= 540 && floor(var.notify_timeout_seconds) == var.notify_timeout_seconds
    error_message = "notify_timeout_seconds must be a whole number from 10 to 540 (the event-function limit, and below Pub/Sub's 600 s ack deadline)."
  }
}

variable "notify_memory" {
  type        = string
  description = "Memory of the notify function, e.g. 256Mi or 512Mi."
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.notify_memory))
    error_message = "notify_memory must look like 256Mi, 512Mi or 1Gi."
  }
}

variable "notify_max_instances" {
  type        = number
  description = "Upper bound of concurrent notify instances (each handles one event at a time). A receiver that hangs holds one instance for its 10 s send timeout."
  default     = 10

  validation {
    condition     = var.notify_max_instances >= 1 && var.notify_max_instances <= 1000
    error_message = "notify_max_instances must be between 1 and 1000."
  }
}

variable "notify_max_delivery_attempts" {
  type        = number
  description = "Deliveries of one event to the notify function before Pub/Sub moves it to the dead-letter topic. The function itself gives a notification up (UNDELIVERED, recorded on the item) after 5 attempts and then acknowledges the event, so only an event it cannot handle at all (Firestore unavailable for long, a bug) gets this far. Must stay above those 5."
  default     = 10

  validation {
    condition     = var.notify_max_delivery_attempts > 5 && var.notify_max_delivery_attempts <= 100
    error_message = "notify_max_delivery_attempts must be from 6 to 100: above the notify function's own 5 attempts (launchq.model.notices.MAX_ATTEMPTS), within Pub/Sub's limit."
  }
}

variable "dashboard_url" {
  type        = string
  description = "LAUNCHQ_DASHBOARD_URL of the notify function: where the dashboard is served, for the item links in notifications (e.g. a custom domain in front of it). null means the module's dashboard service URL when dashboard.enabled, else no dashboard link."
  default     = null

  validation {
    condition     = var.dashboard_url == null || can(regex("^https?://", var.dashboard_url))
    error_message = "dashboard_url must be an http(s) URL or null."
  }
}

variable "secretmanager_endpoint" {
  type        = string
  description = "LAUNCHQ_SECRETMANAGER_ENDPOINT: base URL of Secret Manager, where the notify function reads the notification rules' secrets. null (the right value in production) means https://secretmanager.googleapis.com."
  default     = null

  validation {
    condition     = var.secretmanager_endpoint == null || can(regex("^https?://", var.secretmanager_endpoint))
    error_message = "secretmanager_endpoint must be an http(s) URL or null."
  }
}

variable "logging_endpoint" {
  type        = string
  description = "LAUNCHQ_LOGGING_ENDPOINT: base URL of Cloud Logging, where the notify function reads a failed job's last log lines. null (the right value in production) means https://logging.googleapis.com."
  default     = null

  validation {
    condition     = var.logging_endpoint == null || can(regex("^https?://", var.logging_endpoint))
    error_message = "logging_endpoint must be an http(s) URL or null."
  }
}

# --- Cloud Monitoring: queue signals, a dashboard, two alerts (docs/monitoring.md) -----------

variable "enable_monitoring" {
  type        = bool
  description = "Create the log-based metrics of the queues' signals (<prefix>/queue_waiting, ...), a Cloud Monitoring dashboard and two alerting policies (a queue's oldest wait, dead letters). Enables monitoring.googleapis.com when enable_apis is true."
  default     = true
}

variable "oldest_wait_alert_seconds" {
  type        = number
  description = "Alert when a queue's oldest waiting item has waited longer than this (seconds; the metric <prefix>/queue_oldest_wait_seconds, averaged per minute)."
  default     = 3600

  validation {
    condition     = var.oldest_wait_alert_seconds > 0
    error_message = "oldest_wait_alert_seconds must be positive."
  }
}

variable "oldest_wait_alert_duration_seconds" {
  type        = number
  description = "How long a queue's oldest wait must stay above oldest_wait_alert_seconds before the alert opens (a multiple of 60 s; 0 opens it on the first minute above)."
  default     = 300

  validation {
    condition     = var.oldest_wait_alert_duration_seconds >= 0 && var.oldest_wait_alert_duration_seconds <= 86400 && var.oldest_wait_alert_duration_seconds % 60 == 0
    error_message = "oldest_wait_alert_duration_seconds must be a multiple of 60 from 0 to 86400."
  }
}

variable "alert_notification_channels" {
  type        = list(string)
  description = "Cloud Monitoring notification channels both alerts notify: full names (projects/P/notificationChannels/ID) or bare ids of channels in project_id. Empty: the alerts open incidents in the console and notify nobody."
  default     = []

  validation {
    condition     = alltrue([for channel in var.alert_notification_channels : can(regex("^(projects/[^/\\s]+/notificationChannels/)?[0-9]+$", channel))])
    error_message = "alert_notification_channels are notification channel ids (123...) or names (projects/P/notificationChannels/123...)."
  }
}
