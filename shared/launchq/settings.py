"""Runtime settings, read from the environment once per process.

The same variables configure the functions in Google Cloud, the CLI and the local stack, so that
one command works against the emulators and against a real project:

- `LAUNCHQ_PROJECT` (else `GOOGLE_CLOUD_PROJECT`): project of launchq's own Firestore and
  topics. Required.
- `LAUNCHQ_FIRESTORE_DATABASE`: Firestore database id (`(default)`).
- `LAUNCHQ_QUEUE_TOPIC`: the single shared topic, an opt-in for single-team installs (unset:
  off). Normally each queue has its own topic, `launchq-q-<queue>` (`launchq.spec.topics`), and the
  dispatcher takes the queue from it; messages on the shared topic name their queue in the body.
- `LAUNCHQ_EVENTS_TOPIC`: topic state-change CloudEvents go to (`launchq-events`).
- `LAUNCHQ_VERTEX_ENDPOINT`: base URL of Vertex AI, e.g. the local stand-in
  `http://127.0.0.1:8090` (default `https://{region}-aiplatform.googleapis.com`).
- `LAUNCHQ_SUBMIT_LEASE_SECONDS`: how long a claimed item belongs to one dispatcher before it
  may be repaired (`600`).
- `LAUNCHQ_QUEUE_CACHE_SECONDS`: how long a function instance caches a queue config (`10`).
- `LAUNCHQ_VERTEX_TIMEOUT_SECONDS`: per-request timeout of Vertex calls (`30`), also used for
  the dispatcher's one Cloud Storage call per source item.
- `LAUNCHQ_STORAGE_ENDPOINT`: base URL of the Cloud Storage JSON API the dispatcher checks
  source archives with; else `STORAGE_EMULATOR_HOST` (what the Google storage library reads,
  so the CLI, the jobs and the dispatcher all meet the same emulator), else
  `https://storage.googleapis.com`.
- `LAUNCHQ_CREATE_RATE_PER_MINUTE`: CustomJob creates per minute per (project, region), shared by
  every dispatcher and sweep (`60`, Vertex's "job or LRO submission" quota); `0` = no budget.
- `LAUNCHQ_CREATE_RATES`: per-region overrides, `us-central1=120,europe-west4=30`.
- `LAUNCHQ_QUOTA_BACKOFF_INITIAL_SECONDS` / `LAUNCHQ_QUOTA_BACKOFF_MAX_SECONDS`: how long a queue
  waits after Vertex refused a create for a resource quota, doubling per refusal (`15` / `240`).
- `LAUNCHQ_SWEEP_INTERVAL_SECONDS`: pause between sweep passes inside one invocation (`10`).
- `LAUNCHQ_SWEEP_PERIOD_SECONDS`: how often Cloud Scheduler starts the sweep (`60`); one
  invocation loops until just before the next one starts.
- `LAUNCHQ_CLOUDBUILD_ENDPOINT` / `LAUNCHQ_ARTIFACTREGISTRY_ENDPOINT`: base URLs of Cloud Build
  and Artifact Registry (the local Cloud Build stand-in serves both); default Google's.
- `LAUNCHQ_BUILD_REPOSITORY`: `REGION-docker.pkg.dev/PROJECT/REPOSITORY`, the one repository
  queues may build into (the build service account writes only there); unset: any.
- `LAUNCHQ_SECRETMANAGER_ENDPOINT` / `LAUNCHQ_LOGGING_ENDPOINT`: Secret Manager's and Cloud
  Logging's base URLs (the local stand-ins when set), for the notify function's webhook secrets
  and a failed job's last log lines.
- `LAUNCHQ_DASHBOARD_URL`: where the dashboard is served, for the links in notifications.
- `LAUNCHQ_EXPAND_SECONDS`: how long one delivery of a sweep or array may spend checking and
  recording its children before leaving the rest to the sweep (`30`; the Terraform module sets
  half the dispatch function's timeout).

The submit lease must outlive the longest invocation that can hold it (the event function's
timeout, at most 540 s), otherwise a slow but live dispatcher could be overtaken and a second
job created; 600 s is the default for that reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from launchq.errors import SettingsError

__all__ = ["Settings", "SettingsError"]


@dataclass(frozen=True)
class Settings:
    """What a function instance reads from its environment (`LAUNCHQ_*`, documented in
    docs/deploy.md): project, database, topics, endpoints (the local stand-ins when set), the
    claim lease, cache and timeout lengths, the creation budget and the quota backoff."""

    project: str
    firestore_database: str = "(default)"
    queue_topic: str | None = None
    events_topic: str = "launchq-events"
    vertex_endpoint: str | None = None
    submit_lease_seconds: float = 600.0
    queue_cache_seconds: float = 10.0
    vertex_timeout_seconds: float = 30.0
    storage_endpoint: str | None = None
    cloudbuild_endpoint: str | None = None
    artifactregistry_endpoint: str | None = None
    build_repository: str | None = None
    # Cloud Quotas (cohorts with `read_quotas`): the endpoint (the local stand-in when set) and
    # how often the sweep reads the limits.
    cloudquotas_endpoint: str | None = None
    quota_read_seconds: float = 300.0
    # Sweeps and arrays (launchq.expansion): one delivery's time for its children.
    expand_seconds: float = 30.0
    # The notify function (launchq.notify): where it reads secrets and job logs, and the
    # dashboard its messages link to.
    secretmanager_endpoint: str | None = None
    logging_endpoint: str | None = None
    dashboard_url: str | None = None

    @property
    def storage_base_url(self) -> str:
        from launchq.gcp.gcs import endpoint

        return endpoint(self.storage_endpoint)

    create_rate_per_minute: float = 60.0
    create_rates: tuple[tuple[str, float], ...] = ()
    quota_backoff_initial_seconds: float = 15.0
    quota_backoff_max_seconds: float = 240.0
    sweep_interval_seconds: float = 10.0
    # While items wait behind full capacity: passes this often, so an ended job's slot and
    # quota are refilled sooner (bench/fairshare.py measures what it buys).
    sweep_busy_interval_seconds: float = 2.0
    sweep_period_seconds: float = 60.0

    def vertex_base_url(self, region: str) -> str:
        return self.vertex_endpoint or f"https://{region}-aiplatform.googleapis.com"

    def create_rate(self, region: str) -> float:
        """Creates per minute allowed in `region` (0: no budget)."""
        return dict(self.create_rates).get(region, self.create_rate_per_minute)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        project = env.get("LAUNCHQ_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT")
        if not project:
            raise SettingsError(
                "no GCP project: set LAUNCHQ_PROJECT (or GOOGLE_CLOUD_PROJECT) to the project "
                "that holds launchq's Firestore database and topics"
            )
        return cls(
            project=project,
            firestore_database=env.get("LAUNCHQ_FIRESTORE_DATABASE", "(default)"),
            queue_topic=env.get("LAUNCHQ_QUEUE_TOPIC") or None,
            events_topic=env.get("LAUNCHQ_EVENTS_TOPIC", "launchq-events"),
            vertex_endpoint=env.get("LAUNCHQ_VERTEX_ENDPOINT") or None,
            submit_lease_seconds=_number(env, "LAUNCHQ_SUBMIT_LEASE_SECONDS", 600.0),
            queue_cache_seconds=_number(env, "LAUNCHQ_QUEUE_CACHE_SECONDS", 10.0),
            vertex_timeout_seconds=_number(env, "LAUNCHQ_VERTEX_TIMEOUT_SECONDS", 30.0),
            storage_endpoint=env.get("LAUNCHQ_STORAGE_ENDPOINT")
            or env.get("STORAGE_EMULATOR_HOST")
            or None,
            create_rate_per_minute=_number(env, "LAUNCHQ_CREATE_RATE_PER_MINUTE", 60.0),
            create_rates=_rates(env.get("LAUNCHQ_CREATE_RATES", "")),
            quota_backoff_initial_seconds=_number(
                env, "LAUNCHQ_QUOTA_BACKOFF_INITIAL_SECONDS", 15.0
            ),
            quota_backoff_max_seconds=_number(env, "LAUNCHQ_QUOTA_BACKOFF_MAX_SECONDS", 240.0),
            sweep_interval_seconds=_number(env, "LAUNCHQ_SWEEP_INTERVAL_SECONDS", 10.0),
            sweep_busy_interval_seconds=_number(env, "LAUNCHQ_SWEEP_BUSY_INTERVAL_SECONDS", 2.0),
            sweep_period_seconds=_number(env, "LAUNCHQ_SWEEP_PERIOD_SECONDS", 60.0),
            cloudbuild_endpoint=env.get("LAUNCHQ_CLOUDBUILD_ENDPOINT") or None,
            artifactregistry_endpoint=env.get("LAUNCHQ_ARTIFACTREGISTRY_ENDPOINT")
            or env.get("LAUNCHQ_CLOUDBUILD_ENDPOINT")
            or None,
            build_repository=env.get("LAUNCHQ_BUILD_REPOSITORY") or None,
            cloudquotas_endpoint=env.get("LAUNCHQ_CLOUDQUOTAS_ENDPOINT") or None,
            quota_read_seconds=_number(env, "LAUNCHQ_QUOTA_READ_SECONDS", 300.0),
            expand_seconds=_number(env, "LAUNCHQ_EXPAND_SECONDS", 30.0),
            secretmanager_endpoint=env.get("LAUNCHQ_SECRETMANAGER_ENDPOINT") or None,
            logging_endpoint=env.get("LAUNCHQ_LOGGING_ENDPOINT") or None,
            dashboard_url=env.get("LAUNCHQ_DASHBOARD_URL") or None,
        )


def _rates(raw: str) -> tuple[tuple[str, float], ...]:
    """`us-central1=120,europe-west4=30` -> (("us-central1", 120.0), ("europe-west4", 30.0))."""
    rates = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        region, _, value = part.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not region.strip() or rate < 0:
            raise SettingsError(
                f"LAUNCHQ_CREATE_RATES must look like us-central1=120,europe-west4=30; got {part!r}"
            )
        rates.append((region.strip(), rate))
    return tuple(rates)


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {raw!r}")
    return value
