"""User rules: topic patterns, JMESPath extraction, and real-looking device formats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from bridge.config import Rule, parse_config
from bridge.core.events import event_id_for
from bridge.core.normalise import Message, Normalised, Normaliser, Rejected
from bridge.core.rules import UserRule, compile_rules
from bridge.core.topics import TopicPattern
from bridge.errors import ConfigError

SOURCE = "mqtt://broker-1:1883"
RECEIVED = datetime(2026, 11, 22, 4, 36, 14, tzinfo=UTC)

RDP = {
    "topic": "site/{site}/rdp/{device_id}/{action}",
    "type": {
        "from": "topic.action",
        "map": {"connect": "session.started", "disconnect": "session.ended"},
    },
    "data": {"site": "topic.site", "technician": "payload.user", "duration_s": "payload.duration"},
}
# A remote-access product that names its events in words and keeps the device id in the payload.
REMOTE_ACCESS = {
    "topic": "tenants/{tenant}/remote/events",
    "type": {
        "from": "payload.event",
        "map": {
            "Session Start": "session.started",
            "Session End": "session.ended",
            "Customer Join": "session.customer_joined",
        },
    },
    "data": {
        "device_id": "payload.device.serial",
        "device_name": "payload.device.hostname",
        "session_id": "payload.session.id",
        "technician": "payload.session.tech.login",
        "tenant": "topic.tenant",
    },
    "id": "payload.msgId",
    "occurred_at": "payload.ts",
}
# A deployment tool with a deeply nested report.
DEPLOY = {
    "topic": "fleet/{region}/deploy",
    "type": {
        "from": "payload.status",
        "map": {
            "running": "bulk_deployment.started",
            "done": "bulk_deployment.completed",
            "error": "bulk_deployment.failed",
        },
    },
    "data": {
        "device_id": "payload.agent.id",
        "deployment_id": "payload.deployment.id",
        "package": "join('-', [payload.deployment.package.name, "
        "payload.deployment.package.version])",
        "target_count": "payload.deployment.stats.targets",
        "succeeded": "payload.deployment.stats.ok",
        "failed": "payload.deployment.stats.failed",
        "error": "payload.deployment.errors[0].message",
        "region": "topic.region",
    },
}
# An old agent that sends bare text; the type is fixed by the topic.
LEGACY = {
    "topic": "legacy/{device_id}/hello",
    "type": "device.online",
    "data": {"note": "payload"},
}
# A rule that takes the type as sent, when it is already canonical.
PASSTHROUGH = {
    "topic": "gw/{device_id}/raw",
    "type": {"from": "payload.kind"},
    "data": {"seq": "payload.n"},
}


def bridge(*rules: dict[str, Any]) -> Normaliser:
    return Normaliser(parse_config({"rules": list(rules)}), source=SOURCE)


RULED = bridge(RDP, REMOTE_ACCESS, DEPLOY, LEGACY, PASSTHROUGH)


def run(topic: str, payload: Any, normaliser: Normaliser = RULED) -> Normalised | Rejected:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return normaliser.normalise(Message(topic, raw, RECEIVED))


def accepted(result: Normalised | Rejected) -> Normalised:
    assert isinstance(result, Normalised), result
    return result


def rejected(result: Normalised | Rejected, reason: str) -> str:
    assert isinstance(result, Rejected), result
    assert result.reason == reason, result
    return result.detail


# --- topic patterns ------------------------------------------------------------------------


def test_topic_pattern_names_whole_levels() -> None:
    pattern = TopicPattern("site/{site}/rdp/{device_id}/{action}")
    assert pattern.filter == "site/+/rdp/+/+"
    assert pattern.names == ("site", "device_id", "action")
    assert pattern.match(["site", "jkt", "rdp", "pc-7", "connect"]) == {
        "site": "jkt",
        "device_id": "pc-7",
        "action": "connect",
    }
    assert pattern.match(["site", "jkt", "ssh", "pc-7", "connect"]) is None
    assert pattern.match(["site", "jkt", "rdp", "pc-7"]) is None
    assert pattern.match(["site", "jkt", "rdp", "pc-7", "connect", "x"]) is None


@pytest.mark.parametrize(
    ("template", "words"),
    [("a/dev-{id}/b", "one whole {name} level"), ("a/{x}/{x}", "used twice"), ("a/{}/b", "whole")],
)
def test_bad_topic_patterns(template: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        TopicPattern(template)


# --- real-looking formats ------------------------------------------------------------------


def test_type_from_a_topic_level_through_a_map() -> None:
    result = accepted(run("site/jakarta/rdp/pc-7/disconnect", {"user": "ayu", "duration": 812}))
    event = result.event
    assert event.type == "session.ended"
    assert event.data == {
        "device_id": "pc-7",
        "site": "jakarta",
        "technician": "ayu",
        "duration_s": 812.0,
    }
    assert event.source == f"{SOURCE}/site/jakarta/rdp/pc-7/disconnect"
    assert event.timestamp == RECEIVED
    assert result.content_hash is not None


def test_unmapped_topic_level_is_an_unknown_type() -> None:
    detail = rejected(run("site/jakarta/rdp/pc-7/reboot", {"user": "ayu"}), "unknown_type")
    assert "'reboot'" in detail
    assert "connect, disconnect" in detail


def test_device_id_id_and_time_from_the_payload() -> None:
    payload = {
        "event": "Customer Join",
        "msgId": "7f3c",
        "ts": 1795322174553,
        "device": {"serial": "SN-1029", "hostname": "FRONTDESK"},
        "session": {"id": "s-981", "tech": {"login": "ayu"}},
    }
    result = accepted(run("tenants/acme/remote/events", payload))
    event = result.event
    assert event.type == "session.customer_joined"
    assert event.data == {
        "device_id": "SN-1029",
        "device_name": "FRONTDESK",
        "session_id": "s-981",
        "technician": "ayu",
        "tenant": "acme",
    }
    assert event.id == event_id_for(event.source, "SN-1029", "7f3c")
    assert result.content_hash is None
    assert event.timestamp == datetime(2026, 11, 22, 4, 36, 14, 553000, tzinfo=UTC)


def test_payload_without_the_device_id_is_missing_device_id() -> None:
    payload = {"event": "Session Start", "device": {"hostname": "FRONTDESK"}}
    assert "data.device_id" in rejected(
        run("tenants/acme/remote/events", payload), "missing_device_id"
    )


def test_numeric_device_id_becomes_text() -> None:
    event = accepted(
        run("tenants/acme/remote/events", {"event": "Session End", "device": {"serial": 1029}})
    ).event
    assert event.device_id == "1029"


def test_nested_payload() -> None:
    payload = {
        "status": "error",
        "agent": {"id": "agent-9", "version": "4.1"},
        "deployment": {
            "id": "dep-7",
            "package": {"name": "agent", "version": "4.2"},
            "stats": {"targets": 120, "ok": 118, "failed": 2},
            "errors": [{"host": "pc-3", "message": "disk full"}],
        },
    }
    event = accepted(run("fleet/apac/deploy", payload)).event
    assert event.type == "bulk_deployment.failed"
    assert event.data == {
        "device_id": "agent-9",
        "deployment_id": "dep-7",
        "package": "agent-4.2",
        "target_count": 120,
        "succeeded": 118,
        "failed": 2,
        "error": "disk full",
        "region": "apac",
    }


def test_nested_payload_with_a_wrong_type_names_the_field() -> None:
    payload = {
        "status": "done",
        "agent": {"id": "agent-9"},
        "deployment": {
            "id": "dep-7",
            "package": {"name": "a", "version": "1"},
            "stats": {"targets": "many"},
        },
    }
    detail = rejected(run("fleet/apac/deploy", payload), "invalid_fields")
    assert "target_count: Input should be a valid integer" in detail


def test_an_expression_that_fails_is_invalid_fields() -> None:
    # join() over a number is a JMESPath type error at evaluation time.
    payload = {
        "status": "done",
        "agent": {"id": "a"},
        "deployment": {"package": {"name": 5, "version": 1}},
    }
    assert "rules[2]" in rejected(run("fleet/apac/deploy", payload), "invalid_fields")


def test_bare_text_payload_is_the_payload_text() -> None:
    event = accepted(run("legacy/kiosk-1/hello", b"HELLO v2.1")).event
    assert event.type == "device.online"
    assert event.data == {"device_id": "kiosk-1", "note": "HELLO v2.1"}


def test_type_taken_as_sent_must_be_canonical() -> None:
    assert accepted(run("gw/d1/raw", {"kind": "device.added", "n": 4})).event.data == {
        "device_id": "d1",
        "seq": 4,
    }
    assert "not in the event catalogue" in rejected(
        run("gw/d1/raw", {"kind": "device.moved"}), "unknown_type"
    )
    assert "bridge itself" in rejected(run("gw/d1/raw", {"kind": "bridge.test"}), "unknown_type")
    assert "not a string" in rejected(run("gw/d1/raw", {"kind": 3}), "unknown_type")


def test_rules_come_before_profiles() -> None:
    override = {"topic": "devices/{device_id}/status", "type": "device.added", "data": {}}
    normaliser = bridge(override)
    assert accepted(run("devices/d1/status", b"online", normaliser)).event.type == "device.added"
    assert (
        accepted(run("devices/d1/events", {"type": "device.online"}, normaliser)).event.type
        == "device.online"
    )
    assert normaliser.topic_filters() == [
        "devices/+/status",
        "devices/+/events",
        "devices/+/lifecycle",
    ]


def test_topic_filters_list_rules_first() -> None:
    assert RULED.topic_filters()[:5] == [
        "site/+/rdp/+/+",
        "tenants/+/remote/events",
        "fleet/+/deploy",
        "legacy/+/hello",
        "gw/+/raw",
    ]


# --- configuration checked once, at construction -------------------------------------------


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        (
            {**LEGACY, "type": "device.exploded"},
            "rules[0].type: 'device.exploded' is not in the event catalogue",
        ),
        (
            {**LEGACY, "type": "bridge.test"},
            "rules[0].type: 'bridge.test' is made by the bridge itself",
        ),
        (
            {**RDP, "type": {"from": "topic.action", "map": {"go": "session.go"}}},
            "rules[0].type.map.go",
        ),
        ({**RDP, "data": {"x": "payload.["}}, "rules[0].data.x: not a valid JMESPath"),
        ({**REMOTE_ACCESS, "id": "payload.("}, "rules[0].id: not a valid JMESPath"),
        ({**REMOTE_ACCESS, "occurred_at": "]"}, "rules[0].occurred_at: not a valid JMESPath"),
        ({"topic": "a/{b}", "type": "device.online"}, "no device id"),
        ({"topic": "a/x{b}", "type": "device.online"}, "rules[0].topic"),
    ],
)
def test_rule_problems_are_config_errors(rule: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        bridge(rule)
    assert any(words in problem for problem in caught.value.problems), caught.value.problems


def test_every_broken_rule_is_reported_at_once() -> None:
    rules = [
        Rule.model_validate({**LEGACY, "type": "nope"}),
        Rule.model_validate({**RDP, "data": {"x": "["}}),
    ]
    with pytest.raises(ConfigError) as caught:
        compile_rules(rules)
    assert len(caught.value.problems) == 2
    assert "2 problems" in str(caught.value)


def test_user_rule_is_named_by_its_place() -> None:
    assert UserRule(Rule.model_validate(LEGACY), 3).name == "rules[3] (legacy/{device_id}/hello)"
