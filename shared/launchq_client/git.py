"""Jobs from a git repository: resolve a ref to the commit it names now, and check that commit out.

`launchq enqueue --git URL [--ref REF] [--subdir DIR] --module M` resolves REF (a branch, a tag,
HEAD, or a full commit id) to a commit with `git ls-remote`, checks that commit out into a
scratch directory, and packs DIR of it exactly as `--source DIR` packs a directory (the files git
tracks: `launchq_client.source`). The item names the commit (`source.git`), never the moving ref,
so every attempt and every rebuild runs the same code; the archive of one commit and subdir is
the same bytes whoever packs it, so a source queue uploads it once and a builder queue builds
it once (the build is keyed by the archive's hash and the builder settings).

The clone runs here, with the git credentials of the person enqueuing (SSH keys, a credential
helper): a private repository needs nothing from launchq's service accounts. The URL is stored on
the item, so one with credentials in it (`https://user:token@host/...`) is refused. docs/
source-jobs.md ("From a git repository") says what the other options for private repositories
are (a Cloud Build repository connection; a token in Secret Manager) and why this one.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

COMMIT = re.compile(r"^[0-9a-f]{40}$")
TIMEOUT_SECONDS = 300


class GitError(ValueError):
    """The repository, the ref or the subdirectory cannot be used; the message says which."""


@dataclass(frozen=True)
class Checkout:
    url: str
    commit: str
    subdir: str
    directory: Path  # the subdir of the checked-out commit

    def origin(self) -> dict[str, str]:
        """The item's `source.git`: where its code came from."""
        return {"url": self.url, "commit": self.commit, "subdir": self.subdir}


def url_problem(url: str) -> str | None:
    """Why `url` may not be stored on an item; None if it may."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "git", "ssh", "file"):
        if parts.password or (parts.username and parts.scheme in ("http", "https")):
            return (
                "the URL holds credentials, which the item would store: let git find them "
                "(a credential helper, an SSH key) instead"
            )
        return None
    if re.match(r"^[\w.-]+@[\w.-]+:", url):  # scp-like SSH: git@github.com:org/repo.git
        return None
    return "is not a git URL (https://, ssh://, git://, file:// or user@host:path)"


def subdir_problem(subdir: str) -> str | None:
    path = PurePosixPath(subdir)
    if path.is_absolute() or ".." in path.parts:
        return f"--subdir {subdir!r} must be a path inside the repository"
    return None


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never hang on a password prompt
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=TIMEOUT_SECONDS, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise GitError("git is not installed (apt-get install git)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took over {TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise GitError(f"git {args[0]} failed: {message[-1] if message else done.returncode}")
    return done.stdout


def resolve(url: str, ref: str) -> str:
    """The commit `ref` names in the repository at `url` now (a full commit id stays itself)."""
    if COMMIT.match(ref):
        return ref
    # The peeled pattern too: ls-remote lists an annotated tag's commit (`v1^{}`) only if asked.
    listing = _git("ls-remote", "--", url, ref, f"{ref}^{{}}")
    refs = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    # An annotated tag lists both the tag object and the commit it points to (`^{}`).
    for name in (f"{ref}^{{}}", ref, f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}",
                 f"refs/tags/{ref}"):  # fmt: skip
        if name in refs:
            return refs[name]
    peeled = {name: sha for name, sha in refs.items() if name.endswith("^{}")}
    if len(peeled) == 1:
        return next(iter(peeled.values()))
    if len(refs) == 1:
        return next(iter(refs.values()))
    if refs:
        raise GitError(f"--ref {ref!r} names several refs ({', '.join(sorted(refs))}): be exact")
    raise GitError(f"--ref {ref!r} does not resolve in {url} (no such branch, tag or ref)")


def checkout(url: str, ref: str, subdir: str, scratch: Path) -> Checkout:
    """Resolve `ref` and check its commit out under `scratch`; the subdir must be in it."""
    for problem in (url_problem(url), subdir_problem(subdir or ".")):
        if problem is not None:
            raise GitError(problem)
    commit = resolve(url, ref)
    clone = scratch / "repository"
    _git("clone", "--quiet", "--no-checkout", "--", url, str(clone))
    try:
        _git("checkout", "--quiet", "--detach", commit, cwd=clone)
    except GitError:
        raise GitError(f"commit {commit} is not in {url}") from None
    directory = clone / subdir if subdir else clone
    if not directory.is_dir():
        raise GitError(f"--subdir {subdir!r} is not a directory of {url} at {commit[:12]}")
    return Checkout(url, commit, str(PurePosixPath(subdir)) if subdir else "", directory)
