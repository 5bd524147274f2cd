"""What a source item on a queue with a `builder` block needs built: pure functions, no I/O.

Kept apart from `launchq.imagebuilds` (Firestore, Cloud Build calls) because `launchq.render`
needs the image's tag to fill `${image_uri}`, and rendering must not import a client.
The tag is `<source sha256>-<8 hex of the builder settings>`: content-addressed, so the same
source with the same settings is the same image and is built once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launchq.config import BuilderSettings
from launchq.fields import canonical_hash
from launchq.item import ItemSource

TAG_PREFIX = "launchq-"
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
# Object metadata the uploader writes (`launchq_cli.source`): the archive's top directory and
# the Dockerfile-like paths under it, so the dispatcher finds a missing Dockerfile with the one
# metadata GET it already makes, before any build starts.
TOP_METADATA = "top"
DOCKERFILES_METADATA = "dockerfiles"


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
    for the N-th (a failed build is built again for a new item: launchq.imagebuilds)."""
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


def dockerfile_problem(plan: BuildPlan, metadata: Mapping[str, Any] | None) -> str | None:
    """The Dockerfile the queue names is not in the archive (judged from the listing the
    uploader recorded; an object without that record is not judged: the build will tell)."""
    if not isinstance(metadata, Mapping) or DOCKERFILES_METADATA not in metadata:
        return None
    listed = {p for p in str(metadata[DOCKERFILES_METADATA]).split(",") if p}
    if plan.settings.dockerfile in listed:
        return None
    found = ", ".join(sorted(listed)) or "none"
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
    """The job body with every `tag_uri` string replaced by the digest-pinned `pinned`."""
    if isinstance(body, dict):
        return {k: pin_image(v, tag_uri, pinned) for k, v in body.items()}
    if isinstance(body, list):
        return [pin_image(v, tag_uri, pinned) for v in body]
    return pinned if body == tag_uri else body
