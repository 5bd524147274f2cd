"""What the dashboard says about an item and draws for a queue, in the states users meet: the
reason an item waits as it holds now (paused, quota backoff, a retry's backoff, a build), what
people find their run by (display name, submitter, image or source, the priority's name), the
job links against the local stack and against Google Cloud, and charts fitted to a new stack."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from launchq.model.reasons import quota_reason
from launchq.model.waiting import QueueState
from launchq.settings import Settings
from launchq.store import BACKOFF_FIELD
from launchq_client.queues import queue_state
from launchq_client.reads import item_summary
from launchq_ui import charts, links, views

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
QUEUE: dict[str, Any] = {"name": "q", "paused": False}


def _queued(reason: str | None = "waiting for a free slot", **extra: Any) -> dict[str, Any]:
    return {"queue": "q", "item_id": "i", "state": "QUEUED", "reason": reason, **extra}


def _backing_off(until: datetime) -> dict[str, Any]:
    backoff = {"until": until, "refusals": 1, "metric": "cpus", "region": "us-central1"}
    return {**QUEUE, "max_jobs": 4, BACKOFF_FIELD: backoff}


def _reason(data: dict[str, Any], queue: dict[str, Any], running: int = 4) -> str | None:
    """The reason a page shows: the row as the dashboard builds it, from the queue's state now."""
    state = queue_state({"max_jobs": 4, **queue}, running)
    return views.item_row(item_summary(data, NOW, _Fixed(state)))["reason"]  # type: ignore[arg-type]


class _Fixed:
    """`QueueStates` with one queue state already read."""

    def __init__(self, state: QueueState) -> None:
        self.state = state

    def get(self, name: str) -> QueueState | None:
        return self.state


def test_a_waiting_item_says_what_holds_it_now() -> None:
    slot = "waiting for a free slot"
    assert _reason(_queued(), QUEUE) == slot
    assert _reason(_queued(None), QUEUE) == slot
    assert "slot is free" in str(_reason(_queued(), QUEUE, running=1))
    # Enqueued while the queue was paused, the queue resumed since: no longer "paused".
    assert _reason(_queued("queue paused"), QUEUE) == slot
    # Paused after the item was enqueued: the stored reason still says "a free slot".
    assert _reason(_queued(), {**QUEUE, "paused": True}) == "queue paused"
    assert _reason(_queued(), _backing_off(NOW + timedelta(minutes=1))) == quota_reason(
        "cpus", "us-central1"
    )
    assert _reason(_queued(), _backing_off(NOW - timedelta(minutes=1))) == slot
    retry = _queued("retrying after infrastructure", not_before=NOW + timedelta(seconds=30))
    assert "retry" in str(_reason(retry, _backing_off(NOW + timedelta(minutes=1))))
    cancelled = {"queue": "q", "item_id": "i", "state": "CANCELLED", "reason": None}
    assert _reason(cancelled, {**QUEUE, "paused": True}) is None


def test_rows_carry_what_people_find_their_run_by() -> None:
    data = {
        **_queued(),
        "display_name": "linear fit",
        "priority": 1,
        "submitted_by": {"value": "ada", "verified": False},
        "payload": {"image_uri": "python:3.11-slim"},
        "enqueued_at": NOW - timedelta(minutes=3),
    }
    row = views.item_row(item_summary(data, NOW))
    assert row["display_name"] == "linear fit"
    assert (
        views.item_row(item_summary({**data, "display_name": "q-i"}, NOW))["display_name"] is None
    )  # the default name says nothing the item id does not
    assert row["submitted_by"] == "ada"
    assert row["ran"] == "python:3.11-slim"
    assert row["priority_name"] == "high"
    assert row["age_s"] == 180.0
    source = {"module": "trainer.task", "sha256": "ab" * 32, "uri": "gs://b/x"}
    sourced = views.item_row(item_summary({**data, "payload": {"source": source}}, NOW))
    assert sourced["ran"] == "source trainer.task"
    unnamed = views.item_row(item_summary({**_queued(), "priority": None}, NOW))
    assert (unnamed["priority_name"], unnamed["submitted_by"]) == ("-", None)


JOB = {
    "name": "projects/1/locations/us-central1/customJobs/42",
    "console_url": "https://console.cloud.google.com/vertex-ai/x",
    "logs_url": "https://console.cloud.google.com/logs/y",
}


def test_job_links_point_at_the_local_stack_when_it_runs_the_jobs() -> None:
    local = Settings(project="p", vertex_endpoint="http://127.0.0.1:8090")
    found = links.job_links(JOB, local)
    assert [link.href for link in found] == [
        "http://127.0.0.1:8090/v1/projects/1/locations/us-central1/customJobs/42",
        "#h-log",
    ]
    assert not any("console.cloud.google.com" in link.href for link in found)
    cloud = links.job_links(JOB, Settings(project="p"))
    assert [(link.text, link.note) for link in cloud] == [
        ("Vertex console", "Google Cloud"),
        ("Cloud Logging", "Google Cloud"),
    ]
    assert links.job_links(None, local) == []


def _texts(svg: str) -> list[tuple[float, str, str]]:
    """The time axis' labels: (x, text-anchor, text)."""
    pattern = r'<text class="axis" x="([\d.]+)" y="[\d.]+" text-anchor="(\w+)">([^<]+)<'
    found = re.findall(pattern, svg)
    return [(float(x), anchor, text) for x, anchor, text in found if not text[0].isdigit()]


@pytest.mark.parametrize("size", [charts.WIDE, charts.NARROW])
def test_a_new_stacks_chart_spans_its_data_not_the_whole_day(size: tuple[int, int]) -> None:
    points = [(NOW - timedelta(minutes=m), float(m)) for m in (20, 12, 3)]
    series = views.Series("wait", "s", points, step=False)
    since = NOW - timedelta(minutes=20)
    assert charts.span(since, NOW) == timedelta(minutes=22)
    out = charts.svg(series, NOW, "t", size, since)
    xs = [float(x) for x in re.findall(r'<circle class="dot" cx="([\d.]+)"', out)]
    width = size[0]
    # The oldest point is near the left of the plot, not squeezed into its last percent.
    assert xs[0] < charts.LEFT + 0.15 * (width - charts.LEFT - charts.RIGHT)
    labels = _texts(out)
    assert labels[-1] == (width - charts.RIGHT, "end", "now")  # inside the plot, not cut
    assert "-10m" in [text for _, _, text in labels]
    assert len(labels) <= (width - charts.LEFT) // 80 + 2
    assert f'font-size="{charts.FONT}"' in out
    assert "the last 22m" in out
    # Seconds old: a one-minute axis with ticks in seconds.
    assert charts.span(NOW - timedelta(seconds=5), NOW) == charts.MIN_SPAN
    seconds = [t for _, _, t in _texts(charts.svg(series, NOW, "t", size, NOW))]
    assert seconds[-2:] == ["-" + seconds[-2][1:], "now"]
    assert seconds[-2].endswith("s")


def test_a_chart_with_old_data_keeps_the_window() -> None:
    points = [(NOW - timedelta(hours=30), 0.0), (NOW - timedelta(hours=2), 1.0), (NOW, 1.0)]
    series = views.Series("jobs", "jobs", points, step=True)
    old = NOW - timedelta(hours=23)
    assert charts.span(old, NOW) == views.WINDOW
    assert charts.span(None, NOW) == views.WINDOW
    assert [text for _, _, text in _texts(charts.svg(series, NOW, "t", since=old))][-2:] == [
        "-6h",
        "now",
    ]
    items = [{"enqueued_at": NOW - timedelta(minutes=m)} for m in (3, 9, 1)] + [{}]
    assert views.data_since(items) == NOW - timedelta(minutes=9)
    assert views.data_since([]) is None
