# Firestore: the database (optional), the composite indexes the queries need and the
# single-field index exemptions. Both come from firestore.indexes.json at the repository root,
# the one declaration of them (also usable with `firebase deploy --only firestore:indexes`).
#
# No TTL policy: the data model has no expiry field yet (docs/data-model.md). When items get
# one, it belongs here as a google_firestore_field with ttl_config {}.

locals {
  firestore_declaration = jsondecode(file("${path.module}/../firestore.indexes.json"))

  firestore_indexes = {
    for index in local.firestore_declaration.indexes :
    join("__", concat([index.collectionGroup, index.queryScope], [for field in index.fields : field.fieldPath])) => index
  }
  firestore_field_overrides = {
    for override in local.firestore_declaration.fieldOverrides :
    "${override.collectionGroup}.${override.fieldPath}" => override
  }

  firestore_database = var.create_firestore_database ? google_firestore_database.this[0].name : var.firestore_database
}

resource "google_firestore_database" "this" {
  count = var.create_firestore_database ? 1 : 0

  project                           = var.project_id
  name                              = var.firestore_database
  location_id                       = coalesce(var.firestore_location, var.region)
  type                              = "FIRESTORE_NATIVE"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = var.firestore_point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  delete_protection_state           = var.firestore_delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # With delete protection, `terraform destroy` forgets the database instead of failing.
  deletion_policy = var.firestore_delete_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.required]
}

resource "google_firestore_index" "this" {
  for_each = local.firestore_indexes

  project     = var.project_id
  database    = local.firestore_database
  collection  = each.value.collectionGroup
  query_scope = each.value.queryScope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value.fieldPath
      order        = lookup(fields.value, "order", null)
      array_config = lookup(fields.value, "arrayConfig", null)
    }
  }

  depends_on = [google_project_service.required]
}

# An override with no indexes is an exemption: an empty index_config turns off the automatic
# single-field indexes (job_body, history and payload are never queried; indexing large maps
# only costs writes).
resource "google_firestore_field" "this" {
  for_each = local.firestore_field_overrides

  project    = var.project_id
  database   = local.firestore_database
  collection = each.value.collectionGroup
  field      = each.value.fieldPath

  index_config {
    dynamic "indexes" {
      for_each = each.value.indexes
      content {
        query_scope  = lookup(indexes.value, "queryScope", "COLLECTION")
        order        = lookup(indexes.value, "order", null)
        array_config = lookup(indexes.value, "arrayConfig", null)
      }
    }
  }

  depends_on = [google_project_service.required]
}

# The shared creation budget's token documents (budgets/{project}~{region}~{window}~{k}, see
# shared/launchq/capacity.py) are each written once and useless a minute later: a TTL policy on
# expire_at deletes them (about an hour after their window), and they are exempt from indexing.
resource "google_firestore_field" "budget_ttl" {
  project    = var.project_id
  database   = local.firestore_database
  collection = "budgets"
  field      = "expire_at"

  ttl_config {}

  index_config {}

  depends_on = [google_project_service.required]
}
