"""A local Cloud Build (v1, REST) and Artifact Registry tag lookup for the launchq stack.

No Docker runs here. A build reads its source tarball from the GCS emulator, checks that the
Dockerfile named by its `docker build` step is in it, and "pushes" the image: it records the
image's tag, a digest (the sha256 of the tarball bytes and the Dockerfile path) and the
Dockerfile's CMD/ENTRYPOINT, which the Artifact Registry tag lookup then answers from. Statuses
go QUEUED → WORKING → SUCCESS (or the outcome set through the admin API) after configurable
delays. See docs/cloudbuild-standin.md.
"""

from launchq_local.cloudbuild_standin.builds import BuildDelays, BuildStore
from launchq_local.cloudbuild_standin.server import CloudBuildStandin

__all__ = ["BuildDelays", "BuildStore", "CloudBuildStandin"]
