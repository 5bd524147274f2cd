"""The dashboard's pure parts: chart series from item histories, the SVG, and the cancel gate's
refusals (cross-origin, bad token) that happen before any backend is touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from launchq_cli import main
from launchq_cli.common import Backends
from launchq_ui import charts, views
from launchq_ui.app import create_app

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def _item(enqueued: datetime, *steps: tuple[str, float]) -> dict[str, Any]:
    """An item whose history moves through `steps` (state, seconds after enqueue)."""
    history = [{"from": None, "to": "QUEUED", "at": enqueued, "cause": "accepted"}]
    attempts = []
    previous = "QUEUED"
    for state, after in steps:
        at = enqueued + timedelta(seconds=after)
        history.append({"from": previous, "to": state, "at": at, "cause": "x"})
        if state == "SUBMITTING":
            attempts.append({"n": 1, "created_at": at})
        previous = state
    return {
        "item_id": f"i{enqueued:%H%M%S}",
        "state": previous,
        "enqueued_at": enqueued,
        "history": list(reversed(history)),  # order must not matter
        "attempts": attempts,
    }


def test_running_series_counts_slot_holders_over_time() -> None:
    a = _item(NOW - timedelta(hours=2), ("SUBMITTING", 10), ("RUNNING", 20), ("SUCCEEDED", 100))
    b = _item(NOW - timedelta(hours=2), ("SUBMITTING", 50), ("RUNNING", 60))  # still running
    c = _item(NOW - timedelta(hours=1), ("CANCELLED", 5))  # never held a slot
    series = views.running_series([a, b, c], NOW)
    values = [value for _, value in series.points]
    assert values == [0.0, 1.0, 2.0, 1.0, 1.0]
    assert series.points[0][0] == NOW - views.WINDOW
    assert series.points[-1][0] == NOW


def test_running_series_starts_with_jobs_running_before_the_window() -> None:
    old = _item(NOW - timedelta(hours=30), ("SUBMITTING", 1), ("RUNNING", 2))
    series = views.running_series([old], NOW)
    assert [v for _, v in series.points] == [1.0, 1.0]


def test_wait_series_is_enqueue_to_first_submission() -> None:
    waited = _item(NOW - timedelta(hours=3), ("SUBMITTING", 42.5), ("SUCCEEDED", 60))
    never = _item(NOW - timedelta(hours=3), ("REJECTED", 0.1))
    series = views.wait_series([waited, never])
    assert series.points == [(NOW - timedelta(hours=3) + timedelta(seconds=42.5), 42.5)]


def test_svg_scales_to_the_data_and_escapes_titles() -> None:
    series = views.Series("w", "s", [(NOW - timedelta(hours=12), 30.0), (NOW, 70.0)], step=False)
    out = charts.svg(series, NOW, "<q> wait")
    assert out.startswith("<svg")
    assert out.endswith("</svg>")
    assert "&lt;q&gt; wait" in out
    assert "<q>" not in out
    assert ">100s<" in out  # 70 rounds up to the axis' 100
    assert out.count("<circle") == 2
    empty = charts.svg(views.Series("w", "s", [], step=False), NOW, "t")
    assert "no data in the last 24 h" in empty


def test_nice_max_rounds_up_to_1_2_5() -> None:
    assert [charts._nice_max(v) for v in (0, 0.07, 3, 7, 12, 450)] == [1, 0.1, 5, 10, 20, 500]


def test_cancel_refuses_other_origins_and_bad_tokens_before_any_backend() -> None:
    app = create_app(Backends(project="nowhere"))
    client = app.test_client()
    url = "/queues/q/items/i/cancel"
    foreign = client.post(url, data={"token": "x"}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    forged = client.post(url, data={"token": "0" * 64}, headers={"Origin": "http://localhost"})
    assert forged.status_code == 403
    assert "stale" in forged.get_data(as_text=True)
    assert "script-src 'self'" in forged.headers["Content-Security-Policy"]


def test_ui_without_a_project_fails_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAUNCHQ_PROJECT", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["ui", "--port", "0"])
    assert result.exit_code == 2
    assert "--project" in result.stderr
