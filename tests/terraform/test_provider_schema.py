"""Every google resource type, argument, nested block and read attribute in terraform/ exists.

Checked against the schema of one pinned google provider release, read from the npm package
generated from it (tests/terraform/provider_schema.py says how and what it costs): the offline
stand-in for `terraform validate`. The synthetic snippets below prove that a misspelt name
anywhere is caught, and that a correct configuration is not flagged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.terraform import provider_schema
from tests.terraform.provider_schema import Node, check_parsed, parse_tf
from tests.terraform.test_module import EXAMPLE, MODULE


@pytest.fixture(scope="session")
def schema_cache() -> Path:
    """The pinned package, downloaded once (npm pack) and cached under the venv's tools/."""
    provider_schema.tarball()
    return provider_schema.cache_dir()


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "example"])
def test_every_name_exists_in_the_pinned_provider(schema_cache: Path, directory: Path) -> None:
    problems = provider_schema.check_directory(directory)
    assert not problems, (
        f"names unknown to hashicorp/google {provider_schema.PROVIDER_VERSION}:\n"
        + "\n".join(problems)
    )


GOOD = """
provider "google" {
  project = "p"
  region  = "us-central1"
}

data "google_project" "this" {
  project_id = "p"
}

resource "google_service_account" "push" {
  account_id = "push"
}

resource "google_pubsub_topic" "t" {
  name = "t"
}

resource "google_pubsub_subscription" "s" {
  for_each             = toset(["a"])
  name                 = "s-${each.key}"
  topic                = google_pubsub_topic.t.id
  ack_deadline_seconds = 60
  labels               = { app = "launchq" }

  push_config {
    push_endpoint = "https://example.com/${data.google_project.this.number}"
    oidc_token {
      service_account_email = google_service_account.push.email
    }
  }

  dynamic "dead_letter_policy" {
    for_each = [1]
    content {
      dead_letter_topic     = google_pubsub_topic.t.id
      max_delivery_attempts = 5
    }
  }

  lifecycle {
    create_before_destroy = true
  }
  depends_on = [google_pubsub_topic.t]
}

output "endpoint" {
  value = google_pubsub_subscription.s["a"].push_config[0].oidc_token[0].service_account_email
}
"""


def _check(schema_cache: Path, text: str) -> list[str]:
    return check_parsed({"main.tf": parse_tf(text)}, schema_cache)


def test_a_correct_configuration_passes(schema_cache: Path) -> None:
    assert _check(schema_cache, GOOD) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # A misspelt argument of a resource ...
        ("ack_deadline_seconds = 60", "ack_deadline_secs = 60", "`ack_deadline_secs` is unknown"),
        # ... of a nested block, two levels down ...
        (
            "service_account_email = google_service_account.push.email",
            "service_account_emial = google_service_account.push.email",
            "s.push_config.oidc_token.service_account_emial",
        ),
        # ... and inside a dynamic block's content.
        ("max_delivery_attempts = 5", "max_delivery_attempt = 5", "`max_delivery_attempt`"),
        ("push_config {", "push_configuration {", "block `push_configuration` is unknown"),
        ('dynamic "dead_letter_policy"', 'dynamic "dead_letters"', "`dead_letters` is not a"),
        # An argument written as a block, and a block written as an argument.
        ('labels               = { app = "launchq" }', "labels {\n}", "`labels` is an argument"),
        ("  push_config {", "  push_config = {}\n  x {", "argument `push_config` is a block"),
        ('resource "google_pubsub_topic"', 'resource "google_pubsub_topik"', "no such resource"),
        # (`google_projects` would not do: it is a data source too.)
        ('data "google_project"', 'data "google_projekt"', "no such data type"),
        ('  region  = "us-central1"', '  regoin = "us-central1"', "provider google"),
        # What an expression reads: a computed attribute, and one inside a nested block.
        ("google_service_account.push.email", "google_service_account.push.emial", "`emial`"),
        ("this.number", "this.numbr", "no attribute `numbr`"),
        ("oidc_token[0].service_account_email\n", "oidc_token[0].audiense\n", "`audiense`"),
        (
            "depends_on = [google_pubsub_topic.t]",
            "depends_on = [google_pubsub_topic.u]",
            "not declare",
        ),
    ],
    ids=[
        "argument",
        "nested-argument",
        "dynamic-content-argument",
        "block",
        "dynamic-label",
        "argument-as-block",
        "block-as-argument",
        "resource-type",
        "data-source-type",
        "provider-argument",
        "computed-attribute",
        "data-attribute",
        "nested-computed-attribute",
        "undeclared-resource",
    ],
)
def test_a_misspelt_name_is_reported(schema_cache: Path, old: str, new: str, expected: str) -> None:
    assert GOOD.count(old) >= 1, old
    problems = _check(schema_cache, GOOD.replace(old, new, 1))
    assert problems, f"{new!r} was not reported"
    assert any(expected in p for p in problems), problems


def test_the_package_maps_nested_blocks_and_computed_attributes(schema_cache: Path) -> None:
    found = provider_schema.schemas(
        ["pubsub-subscription", "cloudfunctions2-function", "data-google-project", "provider"],
        schema_cache,
    )
    subscription = found["pubsub-subscription"]
    assert isinstance(subscription, Node)
    assert {"name", "topic", "ack_deadline_seconds"} <= subscription.arguments
    assert "push_config" not in subscription.arguments
    oidc = subscription.blocks["push_config"].blocks["oidc_token"]
    assert oidc.arguments == {"service_account_email", "audience"}
    function = found["cloudfunctions2-function"]
    assert isinstance(function, Node)
    # `uri` is computed: readable, not settable.
    assert "uri" in function.blocks["service_config"].attributes
    assert "uri" not in function.blocks["service_config"].arguments
    project = found["data-google-project"]
    assert isinstance(project, Node)
    assert "number" in project.attributes
    provider = found["provider"]
    assert isinstance(provider, Node)
    assert {"project", "region"} <= provider.arguments


def test_the_cached_tarball_is_the_pinned_one(schema_cache: Path) -> None:
    tarball = schema_cache / provider_schema.TARBALL
    assert provider_schema._integrity(tarball) == provider_schema.INTEGRITY


def test_a_missing_npm_fails_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provider_schema.shutil, "which", lambda _: None)
    with pytest.raises(RuntimeError, match=r"apt-get install npm"):
        provider_schema.tarball(tmp_path / "empty-cache")
