"""Server-side SVG charts: succeeded and failed jobs per time bucket, no JavaScript needed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Bucket:
    """Jobs finished in ``[start, start + width)``."""

    start: datetime
    succeeded: int
    failed: int


def bar_chart(
    buckets: Sequence[Bucket],
    *,
    title: str,
    label_every: int,
    label_format: str = "%H:%M",
    width: int = 720,
    height: int = 160,
) -> Markup:
    """Stacked bars (succeeded below, failed on top) with a y scale and time labels."""
    left, bottom, top = 44, 20, 8
    plot_w, plot_h = width - left - 6, height - bottom - top
    peak = max((b.succeeded + b.failed for b in buckets), default=0)
    scale = _nice_ceiling(peak)
    n = max(len(buckets), 1)
    step = plot_w / n
    bar = max(step - 1, 1)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    fracs = (0, 0.5, 1) if scale >= 2 else (0, 1)
    for frac in fracs:
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" x2="{width - 6}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{round(scale * frac)}</text>"
        )
    for i, b in enumerate(buckets):
        x = left + i * step
        ok_h = plot_h * b.succeeded / scale if scale else 0
        bad_h = plot_h * b.failed / scale if scale else 0
        tip = escape(
            f"{b.start.strftime('%Y-%m-%d %H:%M')} UTC: {b.succeeded} succeeded, {b.failed} failed"
        )
        parts.append(f"<g><title>{tip}</title>")
        if ok_h:
            parts.append(
                f'<rect class="ok" x="{x:.1f}" y="{top + plot_h - ok_h:.1f}" '
                f'width="{bar:.1f}" height="{ok_h:.1f}"/>'
            )
        if bad_h:
            parts.append(
                f'<rect class="bad" x="{x:.1f}" y="{top + plot_h - ok_h - bad_h:.1f}" '
                f'width="{bar:.1f}" height="{bad_h:.1f}"/>'
            )
        parts.append("</g>")
        if label_every and i % label_every == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height - 5}" class="axis">'
                f"{escape(b.start.strftime(label_format))}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... that is >= ``value`` (0 stays 0)."""
    if value <= 0:
        return 0
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= value:
                return factor * magnitude
        magnitude *= 10
