"""Default project and region the way Google's own tools find them, for offline commands.

`launchq queue render` needs a project and a region when the queue config sets none. A Google
user expects them to come from where `gcloud` and the client libraries take them, so the order
is (first hit wins):

- project: `GOOGLE_CLOUD_PROJECT`, `CLOUDSDK_CORE_PROJECT`, then `core/project` of gcloud's
  active configuration;
- region: `CLOUDSDK_AI_REGION`, `CLOUDSDK_COMPUTE_REGION`, then `ai/region` (what `gcloud ai`
  uses), then `compute/region` of gcloud's active configuration.

Environment variables win over the file, as they do for gcloud itself (`CLOUDSDK_<SECTION>_<KEY>`
overrides the configuration); `ai` comes before `compute` because Vertex AI is the `ai` section.

gcloud's configuration is read from its files, not by running `gcloud config get-value`: the
config dir is `$CLOUDSDK_CONFIG`, else `~/.config/gcloud` (`%APPDATA%\\gcloud` on Windows); the
active configuration's name is `$CLOUDSDK_ACTIVE_CONFIG_NAME`, else the `active_config` file,
else `default`; its properties are the INI file `configurations/config_<name>`. Measured on the
shared 2-core development VM with gcloud 528 (`python -m bench.gcloud_defaults`, both ways in one
process on one throw-away config dir, medians): reading project and region from the files takes
0.1 ms; `gcloud config get-value project` plus `... ai/region` take 1.8 s with both set and 3.5 s
with both unset (gcloud then checks whether it runs on GCE; the very first call in a new config
dir took 5.2 s). That is 10,000 times slower, would make every offline render seconds slower, and
would need gcloud installed at all. Installation-wide properties (`<sdk>/properties`) are not
read: they are rare, and a flag or an environment variable always overrides.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_VARIABLES = ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")
REGION_VARIABLES = ("CLOUDSDK_AI_REGION", "CLOUDSDK_COMPUTE_REGION")
PROJECT_PROPERTIES = (("core", "project"),)
REGION_PROPERTIES = (("ai", "region"), ("compute", "region"))


@dataclass(frozen=True)
class Found:
    """A value and where it came from, in words a user can act on."""

    value: str
    source: str


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """gcloud's configuration directory (where `gcloud config set` writes)."""
    env = os.environ if env is None else env
    if env.get("CLOUDSDK_CONFIG"):
        return Path(env["CLOUDSDK_CONFIG"]).expanduser()
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "gcloud"
    return Path.home() / ".config" / "gcloud"


def active_config_file(env: Mapping[str, str] | None = None) -> Path:
    """The properties file of gcloud's active configuration (which may not exist)."""
    env = os.environ if env is None else env
    root = config_dir(env)
    name = env.get("CLOUDSDK_ACTIVE_CONFIG_NAME", "").strip()
    if not name:
        try:
            name = (root / "active_config").read_text(encoding="utf-8").strip()
        except OSError:
            name = ""
    return root / "configurations" / f"config_{name or 'default'}"


def read_properties(path: Path) -> configparser.ConfigParser:
    """gcloud's INI properties file; empty when it is missing or unreadable."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, configparser.Error):
        return configparser.ConfigParser(interpolation=None)
    return parser


def _lookup(
    variables: tuple[str, ...],
    properties: tuple[tuple[str, str], ...],
    env: Mapping[str, str] | None,
) -> Found | None:
    env = os.environ if env is None else env
    for variable in variables:
        value = env.get(variable, "").strip()
        if value:
            return Found(value, f"${variable}")
    path = active_config_file(env)
    parser = read_properties(path)
    for section, key in properties:
        value = parser.get(section, key, fallback="").strip()
        if value:
            return Found(value, f"gcloud config {section}/{key} ({path})")
    return None


def default_project(env: Mapping[str, str] | None = None) -> Found | None:
    return _lookup(PROJECT_VARIABLES, PROJECT_PROPERTIES, env)


def default_region(env: Mapping[str, str] | None = None) -> Found | None:
    return _lookup(REGION_VARIABLES, REGION_PROPERTIES, env)


def where_to_set(kind: str) -> str:
    """How to give a missing default, for error messages."""
    if kind == "project":
        names = " or ".join(f"${v}" for v in PROJECT_VARIABLES)
        return f"pass --project, set {names}, or run `gcloud config set project PROJECT`"
    names = " or ".join(f"${v}" for v in REGION_VARIABLES)
    return f"pass --region, set {names}, or run `gcloud config set ai/region REGION`"
