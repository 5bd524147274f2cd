# Queue signals in Cloud Monitoring, through log-based metrics (docs/monitoring.md).
#
# The code makes no Monitoring API call. It writes structured JSON lines that Cloud Logging
# parses into jsonPayload (launchq.log), and Cloud Logging turns the lines these filters match
# into metric points:
#
#   sweep, every pass, per queue  "queue signals"        queue, waiting, running, oldest_wait_s
#   sweep, per failed attempt     "attempt failed"       queue, failure_class (and item_id, retried)
#   dispatch/sweep, per refusal   "create deferred"      queue; reason not "rate_limited" (and item_id)
#   dispatch/sweep, per admission "admitted: slot free"  queue, state = "SUBMITTING"
#
# tests/terraform/test_monitoring.py evaluates these filters and extractors with terraform and
# matches them against the lines the code really writes: a renamed message or field fails there.
# Everything here exists only when var.enable_monitoring is true.

locals {
  # A gen2 Cloud Function logs as its Cloud Run service, named like the function.
  sweep_logs     = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.sweep}\""
  submitter_logs = "resource.type=\"cloud_run_revision\" AND (resource.labels.service_name=\"${local.function_names.dispatch}\" OR resource.labels.service_name=\"${local.function_names.sweep}\")"

  # The metrics, <prefix>/<key> (logging.googleapis.com/user/<prefix>/<key> in Monitoring).
  # value_extractor: a distribution of that field's values (the sweep's per-pass figures);
  # null: a counter of matching lines. Every label is extracted from the field of its name.
  log_metrics = {
    queue_waiting = {
      display_name     = "launchq: waiting items"
      description      = "Items QUEUED in a queue, as each sweep pass counts them (the sweep's \"queue signals\" line)."
      filter           = "${local.sweep_logs} AND jsonPayload.message=\"queue signals\""
      value_extractor  = "EXTRACT(jsonPayload.waiting)"
      label_extractors = { queue = "EXTRACT(jsonPayload.queue)" }
      unit             = "1"
      buckets          = 16 # exponential, 1 to 65,536 items
    }
    queue_running = {
      display_name     = "launchq: items holding slots"
      description      = "Items holding a slot of a queue (submitting, pending or running), as each sweep pass counts them."
      filter           = "${local.sweep_logs} AND jsonPayload.message=\"queue signals\""
      value_extractor  = "EXTRACT(jsonPayload.running)"
      label_extractors = { queue = "EXTRACT(jsonPayload.queue)" }
      unit             = "1"
      buckets          = 16
    }
    queue_oldest_wait_seconds = {
      display_name     = "launchq: oldest wait"
      description      = "Seconds the oldest QUEUED item of a queue has waited (0 when none waits), as each sweep pass measures it."
      filter           = "${local.sweep_logs} AND jsonPayload.message=\"queue signals\""
      value_extractor  = "EXTRACT(jsonPayload.oldest_wait_s)"
      label_extractors = { queue = "EXTRACT(jsonPayload.queue)" }
      unit             = "s"
      buckets          = 22 # exponential, 1 s to about 48 days
    }
    attempt_failures = {
      display_name     = "launchq: failed attempts"
      description      = "Failed attempts (a job that ended FAILED, was preempted or did not start in time), retried or not, by queue and failure class."
      filter           = "${local.sweep_logs} AND jsonPayload.message=\"attempt failed\""
      value_extractor  = null
      label_extractors = { queue = "EXTRACT(jsonPayload.queue)", failure_class = "EXTRACT(jsonPayload.failure_class)" }
      unit             = "1"
      buckets          = null
    }
    # A create deferred for the request rate (launchq's creation budget, or Vertex's own
    # limit on job submissions: reason "rate_limited") is pacing, not a quota: left out.
    quota_refusals = {
      display_name     = "launchq: quota refusals"
      description      = "Creates Vertex AI refused for a resource quota: the item went back to QUEUED and the queue backs off (or moved to its next placement)."
      filter           = "${local.submitter_logs} AND jsonPayload.message=\"create deferred\" AND NOT jsonPayload.reason=\"rate_limited\""
      value_extractor  = null
      label_extractors = { queue = "EXTRACT(jsonPayload.queue)" }
      unit             = "1"
      buckets          = null
    }
    admissions = {
      display_name     = "launchq: admissions"
      description      = "Items admitted into a slot (QUEUED -> SUBMITTING), by the dispatcher or the sweep; an item re-admitted after a quota refusal counts again."
      filter           = "${local.submitter_logs} AND jsonPayload.message=\"admitted: slot free\" AND jsonPayload.state=\"SUBMITTING\""
      value_extractor  = null
      label_extractors = { queue = "EXTRACT(jsonPayload.queue)" }
      unit             = "1"
      buckets          = null
    }
  }

  metric_label_descriptions = {
    queue         = "The queue's name."
    failure_class = "Why the attempt failed (launchq's failure class: user_error, no_capacity, infrastructure, quota, preempted, start_timeout, ...)."
  }

  # Monitoring's name of each metric; read from the resources, so whatever uses it waits for
  # the metric to exist ("" when enable_monitoring is false: nothing reads it then).
  metric_types = {
    for key in keys(local.log_metrics) :
    key => try("logging.googleapis.com/user/${google_logging_metric.queue[key].name}", "")
  }

  dead_letter_filter = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""

  # Notification channels: ids in project_id, or full names.
  alert_channels = [
    for channel in var.alert_notification_channels :
    startswith(channel, "projects/") ? channel : "projects/${var.project_id}/notificationChannels/${channel}"
  ]
}

resource "google_logging_metric" "queue" {
  for_each = { for key, metric in local.log_metrics : key => metric if var.enable_monitoring }

  project          = var.project_id
  name             = "${var.name_prefix}/${each.key}"
  description      = each.value.description
  filter           = each.value.filter
  value_extractor  = each.value.value_extractor
  label_extractors = each.value.label_extractors

  metric_descriptor {
    display_name = each.value.display_name
    metric_kind  = "DELTA"
    value_type   = each.value.value_extractor == null ? "INT64" : "DISTRIBUTION"
    unit         = each.value.unit

    dynamic "labels" {
      for_each = each.value.label_extractors
      content {
        key         = labels.key
        value_type  = "STRING"
        description = local.metric_label_descriptions[labels.key]
      }
    }
  }

  # Distributions keep each point's exact mean (what the charts and the alert read); the
  # buckets only shape heatmaps and percentiles.
  dynamic "bucket_options" {
    for_each = each.value.value_extractor == null ? [] : [each.value.buckets]
    content {
      exponential_buckets {
        num_finite_buckets = bucket_options.value
        growth_factor      = 2
        scale              = 1
      }
    }
  }

  depends_on = [google_project_service.monitoring]
}

# --- The dashboard ---------------------------------------------------------------------------
# A sweep pass writes one point per queue every 10 s or so: per minute, the distribution
# metrics are read as the mean of the passes' values (ALIGN_DELTA keeps the minute's
# distribution, REDUCE_MEAN takes its mean: both valid for distributions), grouped by queue;
# counters as the number of lines per minute.

locals {
  per_queue_mean = {
    alignmentPeriod    = "60s"
    perSeriesAligner   = "ALIGN_DELTA"
    crossSeriesReducer = "REDUCE_MEAN"
    groupByFields      = ["metric.label.queue"]
  }
  per_minute_count = {
    alignmentPeriod    = "60s"
    perSeriesAligner   = "ALIGN_DELTA"
    crossSeriesReducer = "REDUCE_SUM"
    groupByFields      = ["metric.label.queue"]
  }

  dashboard_charts = [
    {
      title       = "Waiting items per queue"
      filter      = "metric.type=\"${local.metric_types["queue_waiting"]}\" AND resource.type=\"cloud_run_revision\""
      aggregation = local.per_queue_mean
      plot        = "LINE"
      axis        = "items"
      thresholds  = []
    },
    {
      title       = "Items holding slots per queue"
      filter      = "metric.type=\"${local.metric_types["queue_running"]}\" AND resource.type=\"cloud_run_revision\""
      aggregation = local.per_queue_mean
      plot        = "LINE"
      axis        = "items"
      thresholds  = []
    },
    {
      title       = "Oldest wait per queue"
      filter      = "metric.type=\"${local.metric_types["queue_oldest_wait_seconds"]}\" AND resource.type=\"cloud_run_revision\""
      aggregation = local.per_queue_mean
      plot        = "LINE"
      axis        = "seconds"
      thresholds  = [{ value = var.oldest_wait_alert_seconds, label = "alert", color = "RED", direction = "ABOVE" }]
    },
    {
      title       = "Admissions per minute, per queue"
      filter      = "metric.type=\"${local.metric_types["admissions"]}\" AND resource.type=\"cloud_run_revision\""
      aggregation = local.per_minute_count
      plot        = "STACKED_BAR"
      axis        = "admissions/min"
      thresholds  = []
    },
    {
      title       = "Failed attempts per minute, by queue and class"
      filter      = "metric.type=\"${local.metric_types["attempt_failures"]}\" AND resource.type=\"cloud_run_revision\""
      aggregation = merge(local.per_minute_count, { groupByFields = ["metric.label.queue", "metric.label.failure_class"] })
      plot        = "STACKED_BAR"
      axis        = "failures/min"
      thresholds  = []
    },
    {
      title       = "Quota refusals per minute, per queue"
      filter      = "metric.type=\"${local.metric_types["quota_refusals"]}\" AND resource.type=\"cloud_run_revision\""
      aggregation = local.per_minute_count
      plot        = "STACKED_BAR"
      axis        = "refusals/min"
      thresholds  = []
    },
    {
      title  = "Dead-lettered messages (${google_pubsub_subscription.dead_letter.name})"
      filter = local.dead_letter_filter
      aggregation = {
        alignmentPeriod  = "60s"
        perSeriesAligner = "ALIGN_MAX"
      }
      plot       = "LINE"
      axis       = "messages"
      thresholds = [{ value = 0, label = "alert", color = "RED", direction = "ABOVE" }]
    },
  ]

  dashboard_intro = "Queue signals of launchq (${var.name_prefix}), from the sweep's and the dispatcher's log lines through log-based metrics: what each chart shows, the alerts and how to tune them are in docs/monitoring.md."

  # Two charts a row, under a text tile. A zero position and an empty list of thresholds are
  # left out: the API omits them, and the provider would otherwise show a change every plan.
  dashboard_tiles = concat(
    [{ width = 12, height = 2, widget = { title = "launchq", text = { content = local.dashboard_intro, format = "MARKDOWN" } } }],
    [
      for i, chart in local.dashboard_charts : merge(
        {
          yPos   = 2 + floor(i / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = chart.title
            xyChart = merge(
              {
                dataSets = [{
                  timeSeriesQuery = {
                    timeSeriesFilter = { filter = chart.filter, aggregation = chart.aggregation }
                  }
                  plotType           = chart.plot
                  minAlignmentPeriod = "60s"
                  targetAxis         = "Y1"
                }]
                yAxis = { label = chart.axis, scale = "LINEAR" }
              },
              length(chart.thresholds) == 0 ? {} : {
                thresholds = [for threshold in chart.thresholds : merge(threshold, { targetAxis = "Y1" })]
              },
            )
          }
        },
        i % 2 == 0 ? {} : { xPos = 6 },
      )
    ],
  )
}

resource "google_monitoring_dashboard" "queues" {
  count = var.enable_monitoring ? 1 : 0

  project = var.project_id
  dashboard_json = jsonencode({
    displayName  = "launchq queues (${var.name_prefix})"
    mosaicLayout = { columns = 12, tiles = local.dashboard_tiles }
  })

  depends_on = [google_project_service.monitoring]
}

# --- Alerts ----------------------------------------------------------------------------------

# (a) A queue's oldest waiting item has waited longer than oldest_wait_alert_seconds, for
# oldest_wait_alert_duration_seconds: one incident per queue (grouped by its label).
resource "google_monitoring_alert_policy" "oldest_wait" {
  count = var.enable_monitoring ? 1 : 0

  project               = var.project_id
  display_name          = "launchq (${var.name_prefix}): an item has waited over ${var.oldest_wait_alert_seconds} s"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_channels
  user_labels           = local.labels

  conditions {
    display_name = "oldest wait above ${var.oldest_wait_alert_seconds} s"

    condition_threshold {
      filter          = "metric.type=\"${local.metric_types["queue_oldest_wait_seconds"]}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.oldest_wait_alert_seconds
      duration        = "${var.oldest_wait_alert_duration_seconds}s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_MEAN"
        group_by_fields      = ["metric.label.queue"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    subject   = "launchq: an item of queue $${metric.label.queue} has waited over ${var.oldest_wait_alert_seconds} s"
    mime_type = "text/markdown"
    content   = <<-EOT
      The oldest QUEUED item of queue `$${metric.label.queue}` has waited more than
      ${var.oldest_wait_alert_seconds} s for ${var.oldest_wait_alert_duration_seconds} s or more.

      Why does it wait? `launchq ls --queue $${metric.label.queue}` and `launchq status ITEM`
      give each waiting item's reason: the queue is full (`max_jobs`), paused, backing off after
      Vertex quota refusals, over a budget, or below its share of a cohort. The dashboard
      "launchq queues (${var.name_prefix})" shows its running items and quota refusals.
      Tuning: variables `oldest_wait_alert_seconds` and `oldest_wait_alert_duration_seconds`
      (docs/monitoring.md).
    EOT
  }

  depends_on = [google_project_service.monitoring]
}

# (b) The dead-letter subscription holds messages: a queue item the dispatcher failed on
# dispatch_max_delivery_attempts times, or an event the notify function could not handle.
resource "google_monitoring_alert_policy" "dead_letters" {
  count = var.enable_monitoring ? 1 : 0

  project               = var.project_id
  display_name          = "launchq (${var.name_prefix}): messages in the dead-letter subscription"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels
  user_labels           = local.labels

  conditions {
    display_name = "${google_pubsub_subscription.dead_letter.name} is not empty"

    condition_threshold {
      filter          = local.dead_letter_filter
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    subject   = "launchq: messages in ${google_pubsub_subscription.dead_letter.name}"
    mime_type = "text/markdown"
    content   = <<-EOT
      Pub/Sub moved messages to `${google_pubsub_topic.dead_letter.name}`: a queue item the
      dispatcher failed on ${var.dispatch_max_delivery_attempts} times (Firestore or Vertex
      unavailable: content never fails a delivery), or an event the notify function failed on
      ${var.notify_max_delivery_attempts} times. They are kept 7 days. Look at them without
      acknowledging:

          gcloud pubsub subscriptions pull ${google_pubsub_subscription.dead_letter.name} --project=${var.project_id} --limit=10

      The attribute `CloudPubSubDeadLetterSourceSubscription` says where each came from; the
      dispatcher's and notify function's logs say why. Once the cause is fixed, republish the
      items to their queue's topic and acknowledge them; the alert closes when the
      subscription is empty (docs/monitoring.md, docs/deploy.md).
    EOT
  }

  depends_on = [google_project_service.monitoring]
}
