"""Charts as inline SVG, drawn on the server.

Why SVG from Python rather than a chart library: the two charts are a line and a step line over
(up to) 24 hours, which take ~100 lines to draw; a vendored library would be hundreds of KB of
JavaScript to pin and serve, and would draw nothing until its script ran. Server-side SVG is in
the HTML itself: it works offline, without JavaScript, prints, and screen readers get its
`<title>`.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from html import escape

from launchq_ui.views import WINDOW, Series

# Two drawings of each chart, one per layout (the page shows one, by CSS width): SVG text scales
# with the drawing, so one viewBox cannot give readable ticks both in a 600 px card and on a
# 340 px phone column. Ticks are FONT user units, about FONT px at the size each is shown.
WIDE, NARROW = (560, 170), (340, 190)
FONT = 12
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 10, 24
# The axis fits the data when it started less than the window ago, but never spans less than
# this: a first item seconds ago is a point on a short, readable axis, not a dot at the edge.
MIN_SPAN = timedelta(seconds=30)
# Tick steps people read at a glance; the first that gives at most `max_ticks` intervals wins.
_STEPS = [
    timedelta(seconds=s)
    for s in (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600, 43200)
]


def _nice_max(value: float) -> float:
    """The smallest 1/2/5 x 10^n at or above `value`: axis labels people can read."""
    if value <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _label(value: float, unit: str) -> str:
    if unit == "s" and value >= 120:
        return f"{value / 60:.0f}m" if value < 7200 else f"{value / 3600:.0f}h"
    text = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"
    return f"{text}{unit if unit == 's' else ''}"


def _ago(delta: timedelta) -> str:
    seconds = round(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"-{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"-{seconds // 60}m"
    return f"-{seconds}s"


def span(since: datetime | None, now: datetime) -> timedelta:
    """How far back the axis goes: the window, or from `since` (the queue's first item in the
    window, `views.data_since`) with a margin when that is more recent."""
    if since is None:
        return WINDOW
    fitted = (now - since) * 1.1
    return min(max(fitted, MIN_SPAN), WINDOW)


def ticks(length: timedelta, max_ticks: int) -> list[timedelta]:
    """How long ago each time tick is, oldest first, ending with 0 ("now")."""
    step = next((s for s in _STEPS if length / s <= max_ticks), _STEPS[-1])
    count = int(length / step)
    return [step * n for n in range(count, -1, -1)]


def svg(
    series: Series,
    now: datetime,
    title: str,
    size: tuple[int, int] = WIDE,
    since: datetime | None = None,
    reference: tuple[float, str] | None = None,
) -> str:
    """A chart of `series` ending at `now`, over the window or from `since` (`span`); an
    accessible, self-contained `<svg>`. `reference`: a dashed level and its label (a cohort
    member's share)."""
    width, height = size
    length = span(since, now)
    start = now - length
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    visible = [(at, v) for at, v in series.points if at >= start] or series.points[-1:]
    highest = max((v for _, v in series.points), default=0.0)
    top = _nice_max(max(highest, reference[0] if reference is not None else 0.0))

    def x(at: datetime) -> float:
        share = (at - start).total_seconds() / length.total_seconds()
        return LEFT + min(max(share, 0.0), 1.0) * plot_w

    def y(value: float) -> float:
        return TOP + plot_h - (value / top) * plot_h

    caption = "last 24 h" if length >= WINDOW else f"the last {_ago(length)[1:]}"
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}, {caption}" xmlns="http://www.w3.org/2000/svg" '
        f'font-size="{FONT}">',
        f"<title>{escape(title)}, {caption}</title>",
    ]
    for share in (0.0, 0.5, 1.0):
        value = top * share
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"/>'
            f'<text class="axis" x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{_label(value, series.unit)}</text>"
        )
    # About one label per 90 user units: they never touch, whatever the width.
    for ago in ticks(length, max(plot_w // 90, 2)):
        at = now - ago
        # The edge labels are anchored inward so neither "now" nor the oldest is cut off.
        anchor = "end" if not ago else "start" if x(at) - LEFT < 20 else "middle"
        label = "now" if not ago else _ago(ago)
        parts.append(
            f'<text class="axis" x="{x(at):.1f}" y="{height - 7}" text-anchor="{anchor}">'
            f"{label}</text>"
        )
    if reference is not None:
        level, label = reference
        parts.append(
            f'<line class="reference" x1="{LEFT}" x2="{width - RIGHT}" y1="{y(level):.1f}" '
            f'y2="{y(level):.1f}" stroke-dasharray="4 3"/>'
            f'<text class="axis reference" x="{width - RIGHT - 2}" y="{y(level) - 3:.1f}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
    series_points = series.points if series.step else visible
    points = [(x(at), y(value)) for at, value in series_points]
    if series.step and points:
        path = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
        for (_, prev_y), (px, py) in itertools.pairwise(points):
            path.append(f"L{px:.1f},{prev_y:.1f}L{px:.1f},{py:.1f}")
        parts.append(f'<path class="line" d="{"".join(path)}"/>')
    elif points:
        coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline class="line" points="{coords}"/>')
        parts.extend(
            f'<circle class="dot" cx="{px:.1f}" cy="{py:.1f}" r="3"/>' for px, py in points
        )
    else:
        parts.append(
            f'<text class="empty" x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
            'text-anchor="middle">no data in the last 24 h</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
