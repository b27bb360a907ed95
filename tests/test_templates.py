"""Topic templates and MQTT filter matching: pure, with hypothesis against a reference."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import parse_config
from bridge.core.settings.templates import check_filter, check_template, render_topic, topic_matches
from bridge.errors import ConfigError, TemplateError

ENVELOPE = {"id": "evt_1", "type": "device.online", "data": {"device_id": "dev-1", "seq": 7}}


def test_renders_dotted_paths() -> None:
    assert render_topic("devices/{data.device_id}/commands", ENVELOPE) == "devices/dev-1/commands"
    assert render_topic("seq/{data.seq}/{type}", ENVELOPE) == "seq/7/device.online"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "is empty"),
        ("a/b", "holds"),
        ("+", "holds"),
        ("x#", "holds"),
        ("nul\x00", "holds"),
        (["a"], "not a string"),
        ({"a": 1}, "not a string"),
        (None, "not a string"),
        (True, "not a string"),
    ],
)
def test_unsafe_values_are_refused(value: Any, why: str) -> None:
    with pytest.raises(TemplateError, match=why):
        render_topic("devices/{body.device_id}/commands", {"body": {"device_id": value}})


def test_missing_value_is_refused() -> None:
    with pytest.raises(TemplateError, match="has no value"):
        render_topic("devices/{body.device_id}", {"body": {}})
    with pytest.raises(TemplateError, match="has no value"):
        render_topic("devices/{body.device_id}", {"body": "not an object"})


@pytest.mark.parametrize(
    "template",
    ["", "a/{b", "a/}b", "a/{}", "a/{1x}", "a/+/{body.x}", "a/#", "a//{body.x}", "a/{bdy.x}"],
)
def test_bad_templates_fail_at_check(template: str) -> None:
    with pytest.raises(TemplateError):
        check_template(template, roots=("body",))


def test_config_load_reports_bad_templates_and_filters() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "subscriptions": [
                    {
                        "name": "p",
                        "url": "http://x.example",
                        "mode": "pipe",
                        "reply_topic": "devices/{data.device_id/commands",
                    }
                ],
                "inbound": [
                    {
                        "name": "h",
                        "path": "/in/h",
                        "secret": "long-enough-secret",
                        "topic": "devices/{payload.id}",
                        "allow_topics": ["devices/#/x"],
                    }
                ],
            }
        )
    text = "\n".join(caught.value.problems)
    assert "subscriptions[0].reply_topic: unbalanced braces" in text
    assert "inbound[0].topic: {payload.id} is not available here" in text
    assert "inbound[0].allow_topics: '#' must be the last level" in text


@pytest.mark.parametrize("bad", ["", "a/b+", "a/#/b", "#x"])
def test_bad_filters(bad: str) -> None:
    with pytest.raises(TemplateError):
        check_filter(bad)


def _reference(topic_filter: str, topic: str) -> bool:
    """Filter matching as a regular expression, written independently of the implementation."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    pattern = ""
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            # 'a/#' matches 'a' and everything below it
            pattern = pattern[:-1] + "(/.*)?" if i else ".*"
            break
        pattern += ("[^/]*" if level == "+" else re.escape(level)) + (
            "/" if i < len(levels) - 1 else ""
        )
    return re.fullmatch(pattern, topic, flags=re.DOTALL) is not None


_LEVEL = st.sampled_from(["a", "b", "dev-1", "", "$SYS", "commands"])
_TOPICS = st.lists(_LEVEL, min_size=1, max_size=5).map("/".join)
_FILTERS = st.builds(
    lambda levels, tail: "/".join(levels + (["#"] if tail else [])),
    st.lists(st.sampled_from(["a", "b", "+", "dev-1", "", "$SYS"]), min_size=0, max_size=5),
    st.booleans(),
).filter(bool)


@given(_FILTERS, _TOPICS)
def test_topic_matches_agrees_with_reference(topic_filter: str, topic: str) -> None:
    assert topic_matches(topic_filter, topic) == _reference(topic_filter, topic)


@given(st.text(min_size=1).filter(lambda t: not any(c in t for c in "/+#\x00")))
def test_any_safe_value_renders_into_exactly_one_level(value: str) -> None:
    topic = render_topic("devices/{body.id}/commands", {"body": {"id": value}})
    assert topic.split("/") == ["devices", value, "commands"]
    assert topic_matches("devices/+/commands", topic)


def test_known_filter_cases() -> None:
    assert topic_matches("devices/+/commands", "devices/dev-1/commands")
    assert not topic_matches("devices/+/commands", "devices/dev-1/x/commands")
    assert topic_matches("devices/#", "devices")
    assert topic_matches("#", "a/b/c")
    assert not topic_matches("#", "$SYS/broker")
    assert topic_matches("$SYS/#", "$SYS/broker")
