"""What a source item on a queue with a `builder` block needs built: pure functions, no I/O.

Kept apart from `launchq.builds` (Firestore, Cloud Build calls) because `launchq.spec.render`
needs the image's tag to fill `${image_uri}`, and rendering must not import a client.
The tag is `<source sha256>-<8 hex of the builder settings>`: content-addressed, so the same
source with the same settings is the same image and is built once.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from launchq.spec.config import BuilderSettings
from launchq.spec.fields import canonical_hash
from launchq.spec.item import ItemSource

TAG_PREFIX = "launchq-"
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
# Object metadata the uploader writes (`launchq_client.source`): the archive's top directory, the
# Dockerfile-like paths under it, and (when it fits) every path under it, so the dispatcher finds
# a missing Dockerfile with the one metadata GET it already makes, before any build starts.
TOP_METADATA = "top"
DOCKERFILES_METADATA = "dockerfiles"
FILES_METADATA = "files"
# Cloud Storage allows 8 KiB of custom metadata in all: the two listings share it with `sha256`
# and `top`, and either one is left out when it would not fit.
DOCKERFILES_METADATA_BYTES = 4096
FILES_METADATA_BYTES = 3584


@dataclass(frozen=True)
class ImageRef:
    """`LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/PACKAGE` (no tag, no digest)."""

    location: str
    project: str
    repository: str
    package: str

    @property
    def uri(self) -> str:
        return f"{self.location}-docker.pkg.dev/{self.project}/{self.repository}/{self.package}"

    @property
    def repository_uri(self) -> str:
        return f"{self.location}-docker.pkg.dev/{self.project}/{self.repository}"

    @classmethod
    def parse(cls, destination: str) -> ImageRef:
        """Parse a builder `destination`; a tag, a digest or another registry is a ValueError."""
        host, _, rest = destination.partition("/")
        if not host.endswith("-docker.pkg.dev") or "@" in destination:
            raise ValueError(
                "expected REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE (Artifact Registry, "
                "no tag, no digest)"
            )
        parts = rest.split("/")
        if len(parts) < 3 or not all(parts) or ":" in parts[-1]:
            raise ValueError("expected REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE, no tag")
        location = host.removesuffix("-docker.pkg.dev")
        return cls(location, parts[0], parts[1], "/".join(parts[2:]))


@dataclass(frozen=True)
class BuildPlan:
    """What one source item needs built, and where."""

    source: ItemSource
    settings: BuilderSettings
    image: ImageRef

    @property
    def key(self) -> str:
        """The image tag and the `builds/{key}` document id: source sha256 + settings hash."""
        return f"{self.source.sha256}-{settings_hash(self.settings)}"

    @property
    def tag_uri(self) -> str:
        return f"{self.image.uri}:{self.key}"

    @property
    def build_tag(self) -> str:
        return build_tag(self.key)


def build_tag(key: str, attempt: int = 1) -> str:
    """The Cloud Build tag of one build attempt of `key`: `launchq-KEY`, then `launchq-KEY-rN`
    for the N-th (a failed build is built again for a new item: launchq.builds)."""
    return f"{TAG_PREFIX}{key}" if attempt <= 1 else f"{TAG_PREFIX}{key}-r{attempt}"


def settings_hash(settings: BuilderSettings) -> str:
    return canonical_hash(settings.model_dump(mode="json"))[:8]


def plan_for(source: ItemSource, settings: BuilderSettings) -> BuildPlan:
    return BuildPlan(source, settings, ImageRef.parse(settings.destination))


def destination_problem(settings: BuilderSettings, allowed: str | None) -> str | None:
    """A destination outside the deployment's build repository (`LAUNCHQ_BUILD_REPOSITORY`,
    `REGION-docker.pkg.dev/PROJECT/REPOSITORY`) is refused: the build service account may only
    write there."""
    if allowed is None:
        return None
    image = ImageRef.parse(settings.destination)
    if image.repository_uri == allowed.rstrip("/"):
        return None
    return (
        f"builder.destination {settings.destination} is outside the repository this deployment "
        f"builds into ({allowed}); use {allowed}/IMAGE"
    )


def looks_like_dockerfile(path: str) -> bool:
    """`Dockerfile*`, `Containerfile*` or `*.dockerfile`, in any directory, any case: the names
    the `dockerfiles` record lists (a queue may name a file of any other name)."""
    name = path.rsplit("/", 1)[-1].lower()
    return name.startswith(("dockerfile", "containerfile")) or name.endswith(".dockerfile")


def encode_files(paths: Iterable[str]) -> str | None:
    """The `files` record: every path, NUL-separated (no path holds a NUL), zlib-compressed and
    base64-encoded (metadata values are text, and a source tree's paths compress ~5x). None
    when it would not fit in FILES_METADATA_BYTES."""
    raw = "\0".join(paths).encode()
    encoded = base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
    return encoded if len(encoded) <= FILES_METADATA_BYTES else None


def decode_files(value: Any) -> list[str] | None:
    """The paths of a `files` record, or None when there is none or it cannot be read (then
    the archive is judged as if the record were absent)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        raw = zlib.decompress(base64.b64decode(value, validate=True))
        return [p for p in raw.decode().split("\0") if p]
    except (binascii.Error, zlib.error, UnicodeDecodeError):
        return None


def dockerfile_problem(plan: BuildPlan, metadata: Mapping[str, Any] | None) -> str | None:
    """The Dockerfile the queue names is not in the archive, judged from what the uploader
    recorded: the `files` record holds every path, so any name is judged; without it, the
    `dockerfiles` record is complete for Dockerfile-like names only, so another name (say
    `ci/trainer.build`) is not judged, nor is an object with neither record (uploaded by another
    tool): the build will tell."""
    if not isinstance(metadata, Mapping):
        return None
    wanted = posixpath.normpath(plan.settings.dockerfile)  # `./Dockerfile` is `Dockerfile`
    files = decode_files(metadata.get(FILES_METADATA))
    if files is not None:
        present = set(files)
        dockerfiles = {p for p in files if looks_like_dockerfile(p)}
    elif DOCKERFILES_METADATA in metadata and looks_like_dockerfile(wanted):
        dockerfiles = {p for p in str(metadata[DOCKERFILES_METADATA]).split(",") if p}
        present = dockerfiles
    else:
        return None
    if wanted in present:
        return None
    found = ", ".join(sorted(dockerfiles)) or "none"
    return (
        f"{plan.source.uri} has no {plan.settings.dockerfile} (Dockerfiles in it: {found}); "
        "add it to the source, or set builder.dockerfile"
    )


def build_request(plan: BuildPlan, top: str, attempt: int = 1) -> dict[str, Any]:
    """The Cloud Build `Build` (REST, camelCase) that builds and pushes `plan.tag_uri`, tagged
    with the attempt's tag (`build_tag`)."""
    settings = plan.settings
    build: dict[str, Any] = {
        "source": {
            "storageSource": {
                "bucket": plan.source.bucket,
                "object": plan.source.object_name,
            }
        },
        "steps": [
            {
                "name": DOCKER_BUILDER,
                "args": ["build", "-t", plan.tag_uri, "-f", settings.dockerfile, "."],
                "dir": top,
            }
        ],
        "images": [plan.tag_uri],
        "tags": [build_tag(plan.key, attempt)],
        "timeout": f"{settings.timeout}s",
        "options": {"logging": "CLOUD_LOGGING_ONLY"},
    }
    if settings.machine_type:
        build["options"]["machineType"] = settings.machine_type
    if settings.service_account:
        project = settings.service_account.split("@", 1)[1].split(".", 1)[0]
        build["serviceAccount"] = f"projects/{project}/serviceAccounts/{settings.service_account}"
    return build


def pin_image(body: Any, tag_uri: str, pinned: str) -> Any:
    """The job body with every `tag_uri` string replaced by the digest-pinned `pinned`.

    A placement may run the image from a mirror (`image_prefixes`: another region's registry,
    same repository path): `OTHER-REGISTRY/.../IMAGE:TAG` is pinned to the same digest there, as
    a copied or remote repository keeps the digest of what it mirrors."""
    if isinstance(body, dict):
        return {k: pin_image(v, tag_uri, pinned) for k, v in body.items()}
    if isinstance(body, list):
        return [pin_image(v, tag_uri, pinned) for v in body]
    if body == tag_uri:
        return pinned
    name_and_tag = "/" + tag_uri.rsplit("/", 1)[-1]
    if isinstance(body, str) and "@" in pinned and body.endswith(name_and_tag):
        return body.rsplit(":", 1)[0] + "@" + pinned.split("@", 1)[1]
    return body
