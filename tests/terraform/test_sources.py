"""Source jobs in the Terraform module: who may read `gs://<staging bucket>/launchq/sources/`.

The dispatcher (one metadata GET per source item) and the job service accounts (pip installs
the archive) get `storage.objects.get` and nothing else, on the staging buckets named in
`var.staging_buckets` only, with an IAM condition on the object prefix. Structure is checked on
the parsed configuration; the grant map is expanded by the real terraform binary (`terraform
console`, no provider needed), as in test_queues.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.test_module import (
    MODULE,
    _iam_grants,
    block,
    locals_,
    parse_dir,
    resource,
    resources,
    variables,
)
from tests.terraform.test_queues import _local_source, _run, _terraform

DISPATCH_MEMBER = "serviceAccount:lq-dispatch@my-ml-project.iam.gserviceaccount.com"
VISION = "vision@my-ml-project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    return parse_dir(MODULE)


def test_the_source_role_holds_exactly_objects_get(tf: dict[str, Any]) -> None:
    role = resource(tf, "google_project_iam_custom_role", "source_reader")
    assert role["permissions"] == ["storage.objects.get"]  # not objects.list, not create


def test_sources_are_granted_per_bucket_with_a_prefix_condition(tf: dict[str, Any]) -> None:
    grant = resource(tf, "google_storage_bucket_iam_member", "source_reader")
    assert grant["for_each"] == "${local.source_readers}"
    assert grant["bucket"] == "${each.value.bucket}"
    assert grant["role"] == "${google_project_iam_custom_role.source_reader.name}"
    expression = block(grant, "condition")["expression"]
    assert expression == (
        'resource.name.startsWith("projects/_/buckets/${each.value.bucket}/objects/'
        '${local.source_prefix}")'
    )
    assert locals_(tf)["source_prefix"] == "launchq/sources/"
    readers = locals_(tf)["source_readers"]
    assert "var.staging_buckets" in readers
    assert "google_service_account.dispatch.member" in readers
    assert "local.job_service_accounts" in readers
    assert "google_service_account.sweep" not in readers  # the sweep never reads sources


def test_no_other_grant_touches_a_bucket(tf: dict[str, Any]) -> None:
    bucket_grants = [
        (rtype, name) for rtype, name, _ in _iam_grants(tf) if rtype.startswith("google_storage")
    ]
    assert bucket_grants == [("google_storage_bucket_iam_member", "source_reader")]
    assert set(resources(tf, "google_storage_bucket_iam_member")) == {"source_reader"}


def test_the_staging_buckets_variable_is_validated(tf: dict[str, Any]) -> None:
    variable = variables(tf)["staging_buckets"]
    assert variable["default"] == []
    assert "launchq/sources/" in variable["description"]
    assert variable["validation"], "bucket names are validated at plan time"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert shutil.which("terraform"), "terraform is not on PATH (any 1.5+ binary)"
    directory = tmp_path_factory.mktemp("sources-harness")
    (directory / "variables.tf").write_text((MODULE / "variables.tf").read_text())
    names = (
        "default_job_service_account",
        "job_service_accounts",
        "source_prefix",
        "image_build_account_email",
    )
    body = "\n".join(_local_source(name) for name in names)
    readers = _local_source("source_readers")
    assert "google_service_account.dispatch.member" in readers
    body += "\n" + readers.replace("google_service_account.dispatch.member", f'"{DISPATCH_MEMBER}"')
    (directory / "locals.tf").write_text(f"locals {{\n{body}\n}}\n")
    _terraform(directory, "init", "-input=false", "-backend=false")
    return directory


def _readers(directory: Path, **tfvars: Any) -> dict[str, dict[str, str]]:
    path = directory / "test.tfvars.json"
    path.write_text(json.dumps({"project_id": "my-ml-project", **tfvars}))
    out = _terraform(
        directory, "console", f"-var-file={path}", stdin="jsonencode(local.source_readers)"
    )
    result: dict[str, dict[str, str]] = json.loads(json.loads(out.strip()))
    return result


def test_each_bucket_gets_the_dispatcher_and_every_job_account(harness: Path) -> None:
    job = "trainer@my-ml-project.iam.gserviceaccount.com"
    readers = _readers(
        harness,
        staging_buckets=["team-a-staging", "team-b.example.com"],
        job_service_accounts=[job],
        queues={"vision": {"job_service_accounts": [VISION]}},
    )
    default_job = "launchq-job@my-ml-project.iam.gserviceaccount.com"
    members = {(v["bucket"], v["member"]) for v in readers.values()}
    expected = set()
    for bucket in ("team-a-staging", "team-b.example.com"):
        expected.add((bucket, DISPATCH_MEMBER))
        for account in (job, VISION, default_job):
            expected.add((bucket, f"serviceAccount:{account}"))
    assert members == expected
    assert len(readers) == len(expected)


def test_image_builds_add_the_build_account_as_a_source_reader(harness: Path) -> None:
    plain = _readers(harness, staging_buckets=["team-a-staging"])
    built = _readers(harness, staging_buckets=["team-a-staging"], image_builds=True)
    build = "serviceAccount:launchq-build@my-ml-project.iam.gserviceaccount.com"
    assert set(built) - set(plain) == {"build team-a-staging"}
    assert built["build team-a-staging"] == {"bucket": "team-a-staging", "member": build}


def test_no_staging_buckets_means_no_grants(harness: Path) -> None:
    assert _readers(harness) == {}


def test_a_gs_url_is_not_a_bucket_name(harness: Path) -> None:
    path = harness / "bad.tfvars.json"
    path.write_text(json.dumps({"project_id": "my-ml-project", "staging_buckets": ["gs://b"]}))
    result = _run(harness, "plan", "-input=false", "-no-color", f"-var-file={path}")
    assert result.returncode != 0
    assert "without gs://" in re.sub(r"\s+", " ", result.stderr)
