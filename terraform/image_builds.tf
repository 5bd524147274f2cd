# Images built from source (docs/cloudbuild.md): queues with a `builder` block have the
# dispatcher and the sweeper create, follow and cancel Cloud Build builds that push to one
# Artifact Registry repository, running as a dedicated build service account.
#
# - the repository (optional: create_image_build_repository, else an existing one by id);
# - <prefix>-build: writes to that repository, reads source archives (launchq/sources/ of the
#   staging buckets, the same conditional grant as the dispatcher's), writes its build logs;
# - the dispatcher and the sweeper: cloudbuild.builds.create/get/list/update (update = cancel)
#   in their custom roles, the tag lookup on the repository only, and act-as on the build
#   account only (a build that names a service account needs it).

locals {
  image_builds              = var.image_builds
  image_build_location      = coalesce(var.image_build_repository_location, var.region)
  image_build_account_email = "${var.name_prefix}-build@${var.project_id}.iam.gserviceaccount.com"
  image_build_repository = (
    local.image_builds
    ? "${local.image_build_location}-docker.pkg.dev/${var.project_id}/${var.image_build_repository_id}"
    : null
  )
  image_build_repository_name = "projects/${var.project_id}/locations/${local.image_build_location}/repositories/${var.image_build_repository_id}"
  image_build_callers         = local.image_builds ? local.function_members : {}
}

resource "google_artifact_registry_repository" "images" {
  count = local.image_builds && var.create_image_build_repository ? 1 : 0

  project       = var.project_id
  location      = local.image_build_location
  repository_id = var.image_build_repository_id
  format        = "DOCKER"
  description   = "Images launchq builds from source, tagged <source sha256>-<settings hash>."
  kms_key_name  = var.image_build_kms_key_name
  labels        = local.labels

  docker_config {
    # A tag names content (the source's sha256): it must never move to another image.
    immutable_tags = true
  }

  depends_on = [google_project_service.required]
}

resource "google_service_account" "build" {
  count = local.image_builds ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "launchq image builds"
  description  = "Cloud Build identity of launchq's image builds: pushes to the build repository, reads source archives."
}

resource "google_project_iam_custom_role" "tag_reader" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_tag_reader"
  title       = "launchq image tag reader"
  description = "Look up one image tag (is this source already built?); granted on the build repository only."
  permissions = ["artifactregistry.tags.get"]
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  count = local.image_builds ? 1 : 0

  project    = var.project_id
  location   = local.image_build_location
  repository = local.image_build_repository_name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build[0].member

  depends_on = [google_artifact_registry_repository.images]
}

resource "google_artifact_registry_repository_iam_member" "tag_reader" {
  for_each = local.image_build_callers

  project    = var.project_id
  location   = local.image_build_location
  repository = local.image_build_repository_name
  role       = google_project_iam_custom_role.tag_reader.name
  member     = each.value

  depends_on = [google_artifact_registry_repository.images]
}

# Build logs go to Cloud Logging only (the Build's options.logging); log writing has no resource
# narrower than the project.
resource "google_project_iam_member" "build_log_writer" {
  count = local.image_builds ? 1 : 0

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build[0].member
}

# Creating a build that runs as <prefix>-build needs iam.serviceAccounts.actAs on that account:
# granted on it alone, to the two functions.
resource "google_service_account_iam_member" "build_act_as" {
  for_each = local.image_build_callers

  service_account_id = google_service_account.build[0].name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}
