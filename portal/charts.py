"""Small SVG charts drawn on the server (no JavaScript, no library): runs per day and
the mail queue, shown on the admin index as panels (config.registry)."""

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from portal.selectors import runs_per_day

# Readable on the admin's light and dark themes alike.
COLORS = {
    "succeeded": "#2e9d5b",
    "failed": "#d6453d",
    "running": "#3b82c4",
    "sent": "#2e9d5b",
    "waiting": "#3b82c4",
}


def _legend(items: list[tuple[str, str, int | None]], y: int) -> str:
    parts, x = [], 0
    for label, color, value in items:
        text = f"{label} {value}" if value is not None else label
        parts.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{y}" font-size="11" fill="currentColor">{escape(text)}</text>'
        )
        x += 24 + 7 * len(text)
    return "".join(parts)


def stacked_bars_svg(days: list[dict], series: list[str], *, title: str) -> SafeString:
    """A stacked bar per day (``days`` as from runs_per_day), the day's total above,
    weekday initials below and a legend with the totals of each series."""
    width, height, top, bottom = 300, 150, 16, 118
    slot = width / max(1, len(days))
    peak = max([sum(d[s] for s in series) for d in days] + [1])
    bars = []
    for i, day in enumerate(days):
        x = i * slot + slot * 0.15
        bar_width = slot * 0.7
        y = bottom
        for name in series:
            h = (bottom - top) * day[name] / peak
            if h:
                y -= h
                bars.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_width:.1f}" height="{h:.1f}" '
                    f'fill="{COLORS[name]}"><title>{day["day"]:%a %d %b}: {day[name]} '
                    f"{name}</title></rect>"
                )
        total = sum(day[s] for s in series)
        if total:
            bars.append(
                f'<text x="{x + bar_width / 2:.1f}" y="{y - 3:.1f}" font-size="10" '
                f'text-anchor="middle" fill="currentColor">{total}</text>'
            )
        bars.append(
            f'<text x="{x + bar_width / 2:.1f}" y="{bottom + 12}" font-size="10" '
            f'text-anchor="middle" fill="currentColor">{day["day"]:%a}</text>'
        )
    totals = [(name, COLORS[name], sum(d[name] for d in days)) for name in series]
    svg = (
        f'<svg class="scriptorium-chart" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
        f'<line x1="0" y1="{bottom}" x2="{width}" y2="{bottom}" stroke="currentColor" '
        f'stroke-opacity=".3"/>{"".join(bars)}{_legend(totals, height - 4)}</svg>'
    )
    return mark_safe(svg)  # noqa: S308  (built here from numbers and escaped text)


def bar_svg(items: list[tuple[str, int]], *, title: str) -> SafeString:
    """One horizontal bar per (label, count), longest = full width, count at the end."""
    width, row = 300, 24
    height = row * len(items) + 4
    peak = max([n for _, n in items] + [1])
    parts = []
    for i, (label, count) in enumerate(items):
        y = i * row + 4
        w = 180 * count / peak
        color = COLORS.get(label, "#888")
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="11" fill="currentColor">{escape(label)}</text>'
            f'<rect x="70" y="{y + 2}" width="{w:.1f}" height="14" fill="{color}"/>'
            f'<text x="{76 + w:.1f}" y="{y + 13}" font-size="11" fill="currentColor">'
            f"{count}</text>"
        )
    svg = (
        f'<svg class="scriptorium-chart" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(parts)}</svg>"
    )
    return mark_safe(svg)  # noqa: S308


def runs_panel(request) -> dict:
    """Admin index panel: runs of the last 7 days, succeeded/failed/running per day."""
    days = runs_per_day(days=7)
    return {
        "title": "Runs, last 7 days",
        "rows": [],
        "svg": stacked_bars_svg(
            days, ["succeeded", "failed", "running"], title="Runs per day, last 7 days"
        ),
    }


def mail_panel(request) -> dict:
    """Admin index panel: the mail queue's sent / failed / waiting (incl. retrying) rows."""
    from mailqueue.selectors import queue_counts

    counts = queue_counts()
    items = [
        ("sent", counts["sent"]),
        ("failed", counts["failed"]),
        ("waiting", counts["waiting"] + counts["retrying"]),
    ]
    return {"title": "Mail", "rows": [], "svg": bar_svg(items, title="Mail: sent, failed, waiting")}
