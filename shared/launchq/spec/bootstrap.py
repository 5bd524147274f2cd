"""The job-side bootstrap that puts a secret into a job's environment without it being in the job.

A queue whose `wandb.api_key_secret` names a Secret Manager secret version runs each code pool's
command as

    python3 -c <SOURCE> <the command> <its args...>

`SOURCE` (the `_bootstrap` function below, as text) reads LAUNCHQ_WANDB_API_KEY_SECRET, fetches
that version with the job's own service account (an access token from the metadata server, then
Secret Manager's `versions.access`, over plain HTTPS: the standard library only, so any image with
Python 3 runs it), sets WANDB_API_KEY in its own environment, drops the secret's name, and execs
the command: the command is the process Vertex watches, with the key in its environment only.
Failures end the job before the command runs, with a message that names the secret version and
the HTTP status, never a payload. LAUNCHQ_SECRETMANAGER_ENDPOINT points it at another endpoint
(the local stack's Secret Manager stand-in, which needs no token).

Why a wrapper and not a native mechanism: Vertex AI's `ContainerSpec.env` is a list of
`EnvVar{name, value}` (google.cloud.aiplatform.v1 `env_var.proto`): no reference to a secret, as
Cloud Run's `valueSource.secretKeyRef` has. The image must have `python3` and the pool must state
its `command` (the wrapper cannot read an image's ENTRYPOINT); `render` refuses a queue or an
item that leaves either unknowable.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Sequence

PYTHON = "python3"


def _bootstrap() -> None:  # pragma: no cover - runs in the job's container (tested by executing)
    import base64
    import json
    import os
    import sys
    import time
    import urllib.error
    import urllib.request

    name = os.environ.pop("LAUNCHQ_WANDB_API_KEY_SECRET", "")
    argv = sys.argv[1:]
    if not argv:
        sys.exit("launchq bootstrap: no command to run")
    if name:
        endpoint = os.environ.pop("LAUNCHQ_SECRETMANAGER_ENDPOINT", "")
        endpoint = (endpoint or "https://secretmanager.googleapis.com").rstrip("/")
        headers = {}
        if not endpoint.startswith("http://"):
            token_url = (
                "http://metadata.google.internal/computeMetadata/v1/instance/"
                "service-accounts/default/token"
            )
            request = urllib.request.Request(token_url, headers={"Metadata-Flavor": "Google"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                headers["Authorization"] = "Bearer " + json.load(answer)["access_token"]
        url = f"{endpoint}/v1/{name}:access"
        for attempt in range(5):
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, headers=headers), timeout=10
                ) as answer:
                    payload = json.load(answer)["payload"]["data"]
                break
            except urllib.error.HTTPError as error:
                if error.code < 500 or attempt == 4:
                    sys.exit(
                        f"launchq bootstrap: cannot read secret version {name}: HTTP "
                        f"{error.code} (the job's service account needs "
                        "roles/secretmanager.secretAccessor on the secret)"
                    )
            except OSError as error:
                if attempt == 4:
                    sys.exit(f"launchq bootstrap: cannot reach Secret Manager for {name}: {error}")
            time.sleep(2**attempt)
        os.environ["WANDB_API_KEY"] = base64.b64decode(payload).decode().strip()
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        sys.exit(f"launchq bootstrap: cannot run {argv[0]!r}: {error}")


def _source() -> str:
    lines = inspect.getsource(_bootstrap).splitlines()
    body = textwrap.dedent("\n".join(lines[1:]))  # without the `def` line
    return body + "\n"


SOURCE = _source()


def wrapped(command: Sequence[str]) -> list[str]:
    """The container command that runs `command` through the bootstrap."""
    return [PYTHON, "-c", SOURCE, *command]


def is_wrapped(command: Sequence[str]) -> bool:
    return len(command) >= 3 and command[0] == PYTHON and command[2] == SOURCE
