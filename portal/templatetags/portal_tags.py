"""Template filters of the portal."""

import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """``value`` as indented JSON (non-ASCII kept), for <pre> blocks (autoescaped)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@register.inclusion_tag("portal/_run_panel.html")
def run_panel(execution, reload_when_done: str = "1") -> dict:
    """A run's outcome (result, files) and its live part (status, progress, log),
    as on the portal's run page; the admin's live page shows the same."""
    from portal.selectors import run_page_data

    return {**run_page_data(execution=execution), "reload_when_done": reload_when_done}
