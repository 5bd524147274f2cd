"""Charts as inline SVG, drawn on the server.

Why SVG from Python rather than a chart library: the two charts are a line and a step line over
24 hours, which take ~60 lines to draw; a vendored library would be hundreds of KB of JavaScript
to pin and serve, and would draw nothing until its script ran. Server-side SVG is in the HTML
itself: it works offline, without JavaScript, prints, and screen readers get its `<title>`.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from html import escape

from launchq_ui.views import WINDOW, Series

WIDTH, HEIGHT = 560, 160
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 22


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


def svg(series: Series, now: datetime, title: str) -> str:
    """A 24 h chart of `series` ending at `now`; an accessible, self-contained `<svg>`."""
    start = now - WINDOW
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max((v for _, v in series.points), default=0.0))

    def x(at: datetime) -> float:
        share = (at - start).total_seconds() / WINDOW.total_seconds()
        return LEFT + min(max(share, 0.0), 1.0) * plot_w

    def y(value: float) -> float:
        return TOP + plot_h - (value / top) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for share in (0.0, 0.5, 1.0):
        value = top * share
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"/>'
            f'<text class="axis" x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{_label(value, series.unit)}</text>"
        )
    for hours_ago in (24, 18, 12, 6, 0):
        at = now - timedelta(hours=hours_ago)
        label = "now" if hours_ago == 0 else f"-{hours_ago}h"
        parts.append(
            f'<text class="axis" x="{x(at):.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
            f"{label}</text>"
        )
    points = [(x(at), y(value)) for at, value in series.points]
    if series.step and points:
        path = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
        for (_, prev_y), (px, py) in itertools.pairwise(points):
            path.append(f"L{px:.1f},{prev_y:.1f}L{px:.1f},{py:.1f}")
        parts.append(f'<path class="line" d="{"".join(path)}"/>')
    elif points:
        coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline class="line" points="{coords}"/>')
        parts.extend(
            f'<circle class="dot" cx="{px:.1f}" cy="{py:.1f}" r="2.5"/>' for px, py in points
        )
    else:
        parts.append(
            f'<text class="empty" x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
            'text-anchor="middle">no data in the last 24 h</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
