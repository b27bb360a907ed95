"""The checks of a pipe subscription's reply settings.

``reply_topic`` is a topic template (``devices/{data.device_id}/commands``):
where answers go when the device's message named no MQTT 5 Response Topic.
``response_topics`` are topic filter templates (``devices/{data.device_id}/replies/#``):
a device's Response Topic is answered only when it matches one of them once
rendered for its event, so a device cannot make the bridge publish on topics
that are not its own (another device's commands, say).
"""

from __future__ import annotations

from bridge.core.settings.templates import check_filter, check_template
from bridge.errors import TemplateError

__all__ = ["EVENT_ROOTS", "check_reply_topic", "check_response_topics"]

EVENT_ROOTS = ("id", "type", "timestamp", "source", "data")
"""What a reply template may name: the envelope's fields."""


def check_reply_topic(value: str | None) -> str | None:
    if value is not None:
        try:
            check_template(value, roots=EVENT_ROOTS)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
    return value


def check_response_topics(value: list[str]) -> list[str]:
    problems: list[str] = []
    for index, template in enumerate(value):
        try:
            check_filter(template)
            # The placeholders are checked as a topic template's; wildcards are levels.
            levels = ["x" if level in ("+", "#") else level for level in template.split("/")]
            check_template("/".join(levels), roots=EVENT_ROOTS)
        except TemplateError as exc:
            problems.append(f"[{index}]: {exc}")
    if problems:
        raise ValueError("\n".join(problems))
    return value
