"""Do the secret versions a queue names (`wandb.api_key_secret`, its notification rules' webhook
URLs and signing keys) exist, and may they be read?

`launchq queue apply` asks Secret Manager for the version's metadata (`versions.get`, never its
payload: the platform admin applying queues needs `secretmanager.versions.get`, in
`roles/secretmanager.viewer`, not the key itself). A version that does not exist, or that is
disabled or destroyed, refuses the queue with its name: otherwise the queue's first job would
be the one to find out, failing at start. An answer that says nothing about the version (no
permission, no network, no credentials) is a warning: the apply goes on, and the jobs' bootstrap
reports what it finds. LAUNCHQ_SECRETMANAGER_ENDPOINT points at another endpoint (the local
stack's stand-in).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import requests

from launchq.gcp.rest import envelope, session_for
from launchq.spec.config import QueueConfig

DEFAULT_ENDPOINT = "https://secretmanager.googleapis.com"


@dataclass(frozen=True)
class SecretCheck:
    """`problem`: the version cannot be used (refuse); `warning`: it could not be checked."""

    problem: str | None = None
    warning: str | None = None


def queue_secrets(config: QueueConfig) -> list[tuple[str, str]]:
    """Every secret version the queue names, with the config path that names it."""
    found: list[tuple[str, str]] = []
    if config.wandb is not None and config.wandb.api_key_secret is not None:
        found.append(("wandb.api_key_secret", config.wandb.api_key_secret))
    for index, rule in enumerate(config.notify):
        if rule.slack is not None:
            found.append((f"notify[{index}].slack.webhook_secret", rule.slack.webhook_secret))
        if rule.webhook is not None:
            at = f"notify[{index}].webhook"
            found.append((f"{at}.url_secret", rule.webhook.url_secret))
            found.append((f"{at}.signing_key_secret", rule.webhook.signing_key_secret))
    return found


def check_version(
    name: str,
    endpoint: str | None = None,
    timeout: float = 10.0,
    where: str = "wandb.api_key_secret",
) -> SecretCheck:
    """Check that secret version `name` (projects/P/secrets/S/versions/V), named at `where`,
    exists and is ENABLED."""
    base = endpoint or os.environ.get("LAUNCHQ_SECRETMANAGER_ENDPOINT") or DEFAULT_ENDPOINT
    try:
        session = session_for(base.rstrip("/"))
        response = session.get(f"{base.rstrip('/')}/v1/{name}", timeout=timeout)
    except requests.RequestException as exc:
        return SecretCheck(warning=f"could not reach Secret Manager to check {name}: {exc}")
    except (
        Exception
    ) as exc:  # no credentials on this machine (google.auth's DefaultCredentialsError)
        return SecretCheck(warning=f"could not check {name}: {exc}")
    if response.status_code == 404:
        return SecretCheck(problem=f"{where}: {name} does not exist")
    if response.status_code >= 400:
        status, message, _ = envelope(response)
        return SecretCheck(warning=f"could not check {name}: {status}: {message}")
    state = str((response.json() or {}).get("state", ""))
    if state not in ("ENABLED", ""):
        return SecretCheck(problem=f"{where}: {name} is {state}: it cannot be read")
    return SecretCheck()
