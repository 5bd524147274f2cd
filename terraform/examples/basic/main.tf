# The smallest useful launchq deployment: everything in one project, the (default) Firestore
# database created by the module, one default job service account, and one topic per queue in
# `queues` with the publishers who may launch onto it.
#
#   make package                                     # from the repository root
#   cd terraform/examples/basic
#   cp terraform.tfvars.example terraform.tfvars     # and edit it
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
  }
}

variable "project_id" {
  type        = string
  description = "Project to deploy launchq into."
}

variable "region" {
  type        = string
  description = "Region of the functions and the scheduler job."
  default     = "us-central1"
}

variable "create_firestore_database" {
  type        = bool
  description = "Create the (default) Firestore database (false if the project already has one)."
  default     = true
}

variable "job_service_accounts" {
  type        = list(string)
  description = "Extra service accounts your queue configs run Vertex jobs as."
  default     = []
}

variable "staging_buckets" {
  type        = list(string)
  description = "Bucket names (no gs://) holding source jobs' archives under launchq/sources/: your queue configs' staging buckets."
  default     = []
}

variable "queues" {
  type = map(object({
    publishers           = optional(list(string), [])
    job_service_accounts = optional(list(string), [])
    wandb_api_key_secret = optional(string)
    notify_secrets       = optional(list(string), [])
    notify_topics        = optional(list(string), [])
  }))
  description = "Queue name -> who may launch onto it (IAM members), the service accounts its jobs run as, and the secrets and topics its notification rules name (the notify function may read and publish to those only). Each queue gets the topic launchq-q-<queue>."
  default     = {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}

module "launchq" {
  source = "../.."

  project_id                = var.project_id
  region                    = var.region
  create_firestore_database = var.create_firestore_database
  job_service_accounts      = var.job_service_accounts
  staging_buckets           = var.staging_buckets
  queues                    = var.queues
}

output "queue_topics" {
  description = "Each queue's topic: publishing to it launches onto that queue."
  value       = module.launchq.queue_topics
}

output "events_topic" {
  description = "State-change CloudEvents arrive here."
  value       = module.launchq.events_topic
}

output "service_accounts" {
  description = "Service accounts the module created."
  value       = module.launchq.service_accounts
}

output "sweep_function_url" {
  description = "URL of the sweep function (not publicly invokable)."
  value       = module.launchq.sweep_function_url
}

output "publish_example" {
  description = "Publish a first item with gcloud."
  value       = module.launchq.publish_example
}
