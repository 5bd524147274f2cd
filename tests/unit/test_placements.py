"""Placements in the queue config: validated like the queue, rendered per placement, and the
failover policy that picks the next one."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from launchq.model.failover import MOVING, choose
from launchq.model.reasons import FailureClass
from launchq.spec.buildplan import pin_image
from launchq.spec.checks import parse_queue_config
from launchq.spec.config import RetryPolicy
from launchq.spec.item import parse_item
from launchq.spec.placements import Failover
from launchq.spec.render import RenderContext, render_placements
from launchq.spec.validation import ConfigError
from launchq.submission import with_attempt
from launchq_client.configs import to_custom_job, validate_queue_config

BASE: dict[str, Any] = {
    "name": "q",
    "project": "my-project",
    "region": "us-central1",
    "spec": {
        "worker_pool_specs": [
            {
                "machine_spec": {
                    "machine_type": "a2-ultragpu-2g",
                    "accelerator_type": "NVIDIA_A100_80GB",
                    "accelerator_count": 2,
                },
                "replica_count": 1,
                "container_spec": {"image_uri": "${image_uri}"},
            }
        ],
        "base_output_dir": "gs://central-bucket/runs",
    },
}
LADDER = [
    {"name": "central-spot", "scheduling_strategy": "SPOT"},
    {
        "name": "east",
        "region": "us-east4",
        "staging_bucket": "gs://east-bucket",
        "image_prefixes": {
            "us-central1-docker.pkg.dev/p": "us-east4-docker.pkg.dev/p",
            "us-central1-docker.pkg.dev/p/special": "europe-docker.pkg.dev/p/special",
        },
    },
    {
        "scheduling_strategy": "FLEX_START",
        "max_wait_duration": "2h",
        "machines": [
            {
                "machine_type": "g2-standard-48",
                "accelerator_type": "NVIDIA_L4",
                "accelerator_count": 4,
            }
        ],
    },
]


def config(**extra: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), "placements": copy.deepcopy(LADDER), **extra}


def issues(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_queue_config(data, name="q")
    return [str(issue) for issue in info.value.issues]


def rendered(
    data: dict[str, Any], image: str = "us-central1-docker.pkg.dev/p/repo/t:1"
) -> list[Any]:
    parsed = parse_queue_config(data, name="q")
    item = parse_item({"image_uri": image, "queue": "q", "item_id": "i-1"})
    context = RenderContext(now=datetime(2026, 1, 2, tzinfo=UTC), item_id="i-1", queue="q")
    return render_placements(parsed, item, context)


def test_every_placement_renders_where_and_how_it_says() -> None:
    (n0, j0), (n1, j1), (n2, j2) = rendered(config())
    assert [n0, n1, n2] == ["central-spot", "east", "us-central1-flex-start"]
    assert [j.region for j in (j0, j1, j2)] == ["us-central1", "us-east4", "us-central1"]
    assert j1.parent == "projects/my-project/locations/us-east4"
    assert j0.body["jobSpec"]["scheduling"] == {"strategy": "SPOT"}
    assert j2.body["jobSpec"]["scheduling"] == {
        "strategy": "FLEX_START",
        "maxWaitDuration": "7200s",
    }
    assert j2.body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"] == {
        "machineType": "g2-standard-48",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 4,
    }
    # The bucket moves, the path under it stays.
    assert j1.body["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"] == "gs://east-bucket/runs"
    # The registry mirror: the image comes from the placement's region.
    images = [
        j.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] for j in (j0, j1)
    ]
    assert images == ["us-central1-docker.pkg.dev/p/repo/t:1", "us-east4-docker.pkg.dev/p/repo/t:1"]
    for job in (j0, j1, j2):
        to_custom_job(job.body)  # Vertex would parse every one


def test_the_longest_image_prefix_wins() -> None:
    (_, _), (_, east), _ = rendered(config(), image="us-central1-docker.pkg.dev/p/special/t:1")
    pool = east.body["jobSpec"]["workerPoolSpecs"][0]
    assert pool["containerSpec"]["imageUri"] == "europe-docker.pkg.dev/p/special/t:1"


def test_every_attempt_anywhere_checkpoints_in_one_place() -> None:
    dirs = set()
    for name, job in rendered(config()):
        env = {
            e["name"]: e["value"]
            for e in job.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]
        }
        assert env["LAUNCHQ_PLACEMENT"] == name
        assert env["LAUNCHQ_ATTEMPT"] == "1"
        dirs.add(env["LAUNCHQ_CHECKPOINT_DIR"])
    assert dirs == {"gs://central-bucket/launchq/checkpoints/q/i-1/"}


def test_a_queue_without_placements_has_one_unnamed_placement() -> None:
    data = copy.deepcopy(BASE)
    [(name, job)] = rendered(data)
    assert name == "us-central1-standard"
    env = job.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]
    assert [e["name"] for e in env] == ["LAUNCHQ_ATTEMPT", "LAUNCHQ_CHECKPOINT_DIR"]


def test_a_new_attempt_sets_its_number_where_launchq_put_it() -> None:
    [(_, job)] = rendered(copy.deepcopy(BASE))
    body = with_attempt(job.body, 3)
    env = body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]
    assert [e for e in env if e["name"] == "LAUNCHQ_ATTEMPT"] == [
        {"name": "LAUNCHQ_ATTEMPT", "value": "3"}
    ]
    assert body["labels"]["launchq-attempt"] == "3"
    assert job.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"][0]["value"] == "1"


def test_a_placement_is_held_to_every_rule_of_the_queue() -> None:
    data = config()
    data["placements"][1]["scheduling_strategy"] = "FLEX_START"
    data["placements"][1]["machines"] = [
        {"accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 1}
    ]
    found = issues(data)
    assert len(found) == 1
    assert found[0].startswith(
        "placements[1].spec.worker_pool_specs[0].machine_spec.accelerator_type: "
    )
    assert "FLEX_START needs one of" in found[0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_wait_duration": "1h"}, "placements[0]: max_wait_duration applies only to"),
        ({"region": "Central"}, "placements[0].region: "),
        (
            {"machines": [{"pool": 3, "machine_type": "n1-standard-4"}]},
            "placements[0].machines: pool 3",
        ),
        (
            {"machines": [{"accelerator_type": "NVIDIA_A1000"}]},
            "placements[0].machines[0].accelerator_type",
        ),
        ({"staging_bucket": "central-bucket"}, "placements[0].staging_bucket: "),
        ({"zone": "us-central1-a"}, "placements[0]: unknown key 'zone'"),
    ],
)
def test_placement_mistakes_are_refused_with_their_path(
    change: dict[str, Any], expected: str
) -> None:
    data = config()
    data["placements"][0] = {**data["placements"][0], **change}
    found = issues(data)
    assert any(issue.startswith(expected) for issue in found), found


def test_failover_needs_placements_and_launchq_variables_are_launchqs() -> None:
    data = copy.deepcopy(BASE)
    data["failover"] = {"policy": "same_first"}
    assert issues(data) == ["failover: a failover policy needs placements to move between"]
    data = config()
    data["spec"]["worker_pool_specs"][0]["container_spec"]["env"] = [
        {"name": "LAUNCHQ_ATTEMPT", "value": "9"}
    ]
    [found] = issues(data)
    assert found.startswith("spec.worker_pool_specs[0].container_spec.env[0].name: LAUNCHQ_*")


def test_a_built_image_is_pinned_in_every_placement_mirror() -> None:
    tag = "us-central1-docker.pkg.dev/p/repo/img:abc"
    pinned = "us-central1-docker.pkg.dev/p/repo/img@sha256:" + "f" * 64
    body = {"a": tag, "b": "us-east4-docker.pkg.dev/p/repo/img:abc", "c": "other/thing:abc"}
    assert pin_image(body, tag, pinned) == {
        "a": pinned,
        "b": "us-east4-docker.pkg.dev/p/repo/img@sha256:" + "f" * 64,
        "c": "other/thing:abc",
    }


# -- the failover policy ----------------------------------------------------------------------

EAGER = Failover()
RETRY = RetryPolicy(backoff_initial_seconds=60, backoff_max_seconds=600)


@pytest.mark.parametrize(
    ("failed", "target", "delay"),
    [
        ([0], 1, 0.0),  # never-failed placements first, in the queue's order
        ([0, 1], 2, 0.0),
        ([0, 1, 2], 0, 60.0),  # all failed once: the least recently failed, after its backoff
        ([0, 1, 2, 0], 1, 60.0),
        ([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], 1, 240.0),  # three failures at 1: 60, 120, 240 there
        ([1], 0, 0.0),  # a move back up the ladder when the top has not failed
    ],
)
def test_eager_next_goes_to_the_least_recently_failed(
    failed: list[int], target: int, delay: float
) -> None:
    move = choose(EAGER, RETRY, 3, failed[-1], failed, FailureClass.NO_CAPACITY)
    assert (move.placement, move.delay, move.moved) == (target, delay, True)


def test_same_first_stays_for_its_tries_then_moves() -> None:
    policy = Failover(policy="same_first", same_tries=2)
    stay = choose(policy, RETRY, 3, 0, [0], FailureClass.PREEMPTED)
    assert (stay.placement, stay.moved, stay.delay) == (0, False, 60.0)
    move = choose(policy, RETRY, 3, 0, [0, 0], FailureClass.PREEMPTED)
    assert (move.placement, move.moved) == (1, True)


@pytest.mark.parametrize("klass", sorted(set(FailureClass) - MOVING))
def test_classes_that_are_not_the_placements_fault_stay(klass: FailureClass) -> None:
    move = choose(EAGER, RETRY, 3, 1, [1], klass)
    assert (move.placement, move.moved) == (1, False)


def test_one_placement_never_moves() -> None:
    move = choose(EAGER, RETRY, 1, 0, [0, 0], FailureClass.NO_CAPACITY)
    assert (move.placement, move.moved, move.delay) == (0, False, 120.0)
