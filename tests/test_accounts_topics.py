"""Which account an event belongs to, and who it goes to: pure parts, no I/O.

The account comes from the topic only (``accounts.topic_prefix`` for the
native topics, a rule's ``account: topic.<level>``), never from the payload;
the router keeps an account's subscriptions to that account's events.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from bridge.config import Settings, Subscription, parse_config
from bridge.core.normalise import Message, Normalised, Normaliser, Rejected
from bridge.core.presence import Presence, Transition
from bridge.core.route import Router
from bridge.errors import ConfigError
from bridge.ingest.presence import PresenceTracker

NOW = datetime(2026, 11, 22, 4, 36, 14, tzinfo=UTC)


def _normaliser(**overrides: object) -> Normaliser:
    return Normaliser(parse_config(overrides), source="mqtt://broker")


def _message(topic: str, payload: object) -> Message:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Message(topic=topic, payload=raw, received_at=NOW)


def _event(normaliser: Normaliser, topic: str, payload: object) -> Normalised:
    found = normaliser.normalise(_message(topic, payload))
    assert isinstance(found, Normalised), found
    return found


def test_the_prefix_names_the_account_of_the_native_topics() -> None:
    normaliser = _normaliser(accounts={"topic_prefix": "tenants/{account}/"})
    assert normaliser.topic_filters() == [
        "tenants/+/devices/+/status",
        "tenants/+/devices/+/events",
        "tenants/+/devices/+/lifecycle",
        "devices/+/status",
        "devices/+/events",
        "devices/+/lifecycle",
    ]
    acme = _event(
        normaliser, "tenants/acme/devices/d1/events", {"type": "session.started", "id": "m"}
    )
    assert acme.event.account == "acme" and acme.event.device_id == "d1"
    # A payload cannot choose its account: the topic's stands.
    claimed = {"type": "session.started", "id": "m", "account": "globex"}
    assert _event(normaliser, "tenants/acme/devices/d1/events", claimed).event.account == "acme"
    globex = _event(
        normaliser, "tenants/globex/devices/d1/events", {"type": "session.started", "id": "m"}
    )
    # The same device and message id under two accounts: two events.
    assert globex.event.id != acme.event.id and globex.event.account == "globex"
    plain = _event(normaliser, "devices/d1/events", {"type": "session.started", "id": "m"})
    assert plain.event.account is None
    status = _event(normaliser, "tenants/acme/devices/d1/status", b"online")
    assert (status.event.type, status.event.account) == ("device.online", "acme")
    # A message the account's topic carries but that is no event keeps its account.
    refused = normaliser.normalise(_message("tenants/acme/devices/d1/events", b"{broken"))
    assert isinstance(refused, Rejected) and refused.account == "acme"
    bad = normaliser.normalise(_message("tenants/-x/devices/d1/events", {"type": "device.added"}))
    assert isinstance(bad, Rejected) and bad.reason == "invalid_account"
    assert isinstance(
        _normaliser().normalise(_message("tenants/acme/devices/d1/events", {})), Rejected
    )


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("tenants/{account}", "ending with '/'"),
        ("tenants/", "exactly one level {account}"),
        ("{account}/{account}/", "exactly one level {account}"),
        ("tenants/+/{account}/", "literal text"),
        ("/tenants/{account}/", "ending with '/'"),
    ],
)
def test_a_prefix_that_cannot_name_an_account_is_refused(prefix: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"accounts": {"topic_prefix": prefix}})
    assert raised.value.problems[0].startswith("accounts.topic_prefix: ")
    assert problem in raised.value.problems[0]


def test_a_rule_names_the_topic_level_of_the_account() -> None:
    rule = {
        "topic": "site/{site}/rdp/{device_id}/{action}",
        "type": {"from": "topic.action", "map": {"connect": "session.started"}},
        "account": "topic.site",
    }
    normaliser = _normaliser(rules=[rule])
    found = _event(normaliser, "site/jkt/rdp/pc-9/connect", {"user": "ayu"})
    assert found.event.account == "jkt"
    unknown = normaliser.normalise(_message("site/jkt/rdp/pc-9/reboot", {}))
    assert isinstance(unknown, Rejected) and unknown.account == "jkt"
    for account, problem in (
        ("topic.region", "account: the topic has no level {region}"),
        ("payload.tenant", "account: String should match pattern"),
    ):
        with pytest.raises(ConfigError) as raised:
            parse_config({"rules": [{**rule, "account": account}]})
        assert raised.value.problems[0].startswith(f"rules[0].{problem}"), raised.value.problems


def test_an_accounts_subscriptions_see_only_its_events() -> None:
    subs = [
        Subscription(name="ops", url="https://ops.example/hook"),
        Subscription(name="acme-hook", url="https://acme.example/hook"),
        Subscription(name="globex-hook", url="https://globex.example/hook", events=["device.*"]),
    ]
    router = Router(subs, {"acme-hook": "acme", "globex-hook": "globex", "ops": ""})
    assert router.owners == {"acme-hook": "acme", "globex-hook": "globex"}
    normaliser = _normaliser(accounts={"topic_prefix": "tenants/{account}/"})
    cases = {
        "tenants/acme/devices/d/events": ["ops", "acme-hook"],
        "tenants/globex/devices/d/events": ["ops"],  # globex-hook wants device.* only
        "tenants/other/devices/d/events": ["ops"],
        "devices/d/events": ["ops"],  # no account: the operator's only
    }
    for topic, wanted in cases.items():
        event = _event(normaliser, topic, {"type": "session.started"}).event
        assert [s.name for s in router.match(event)] == wanted, topic
    added = _event(normaliser, "tenants/globex/devices/d/lifecycle", {"action": "added"})
    assert [s.name for s in router.match(added.event)] == ["ops", "globex-hook"]


def test_the_bridges_presence_events_take_the_devices_account() -> None:
    settings: Settings = parse_config({})
    tracker = PresenceTracker(
        settings.presence,
        store=None,  # type: ignore[arg-type]  # announce() never touches it
        router=Router(settings.subscriptions),
        source="mqtt://broker",
        owner="a",
        lease=1.0,
        hand_over=None,  # type: ignore[arg-type]
    )
    ours = tracker.announce(
        Transition("d1", Presence.OFFLINE, "heartbeat_timeout", 5.0, 1.0, "acme")
    )
    theirs = tracker.announce(
        Transition("d1", Presence.OFFLINE, "heartbeat_timeout", 5.0, 1.0, "globex")
    )
    nobodys = tracker.announce(Transition("d1", Presence.OFFLINE, "heartbeat_timeout", 5.0, 1.0))
    assert (ours.event.account, theirs.event.account, nobodys.event.account) == (
        "acme",
        "globex",
        None,
    )
    assert len({ours.event.id, theirs.event.id, nobodys.event.id}) == 3
