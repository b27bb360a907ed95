"""Pipe mode: a receiver's answer reaches the device over a real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.config import Subscription
from bridge.core.events import Event
from bridge.core.outcomes import AttemptOutcome, AttemptResult, DeliveryStatus
from bridge.core.trace import EventContext
from bridge.delivery.pipe import (
    Pipe,
    PipeError,
    Reply,
    plan_error_reply,
    plan_reply,
    reply_id,
    response_topic_problem,
)
from bridge.store.outbox import OutboxKind, OutboxMessage
from bridge.store.rows import Delivery
from tests.conftest import bridge_config, pipe_subscription, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, receiving
from tests.support.waiting import wait_until

PIPE = Subscription.model_validate(
    {
        "name": "p",
        "url": "http://x.example",
        "mode": "pipe",
        "reply_topic": "devices/{data.device_id}/commands",
        "response_topics": ["replies/{data.device_id}", "replies/{data.device_id}/#"],
        "pipe_max_reply": 100,
    }
)
EVENT = Event("evt_1", "device.online", datetime(2026, 1, 1, tzinfo=UTC), "s", {"device_id": "d1"})


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (204, b'{"a": 1}', None),
        (200, b"", None),
        (200, b"  ", None),
        (200, b"not json", "pipe: the answer is not JSON"),
        (200, b'{"pad": "' + b"x" * 100 + b'"}', "pipe: the answer is larger than"),
    ],
)
def test_plan_reply_nothing_or_error(status: int, body: bytes, expected: str | None) -> None:
    plan = plan_reply(PIPE, EVENT, status, body)
    if expected is None:
        assert plan is None
    else:
        assert isinstance(plan, PipeError) and plan.reason.startswith(expected)


def test_plan_reply_wraps_the_answer() -> None:
    plan = plan_reply(PIPE, EVENT, 200, b'{"command": "reboot"}')
    assert plan == Reply(
        "devices/d1/commands",
        b'{"event_id":"evt_1","reply":{"command":"reboot"}}',
        b"evt_1",
        "application/json",
    )
    bad = Event("evt_2", "device.online", EVENT.timestamp, "s", {"device_id": "a/b"})
    refused = plan_reply(PIPE, bad, 200, b"{}")
    assert isinstance(refused, PipeError) and "reply topic" in refused.reason


def _answers(request: Any, _n: int) -> Answer:
    device = request.json()["data"]["device_id"]
    if device == "dev-1":
        return Answer(200, body=json.dumps({"command": "sync", "for": device}).encode())
    if device == "dev-2":
        return Answer(200, body=b"<html>not json</html>")
    return Answer(204)


async def test_device_receives_the_receivers_answer(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with receiving(_answers) as receiver:
        sub = pipe_subscription(receiver, "pipe", reply_topic="devices/{data.device_id}/commands")
        async with running_bridge(bridge_config(mosquitto, tmp_path, [sub])) as bridge:
            with Publisher(mosquitto.port) as device:
                device.subscribe("devices/+/commands")
                device.publish_all(
                    [
                        ("devices/dev-2/status", "online"),
                        ("devices/dev-3/status", "online"),
                        ("devices/dev-1/status", "online"),
                    ]
                )
                await wait_until(lambda: len(device.received) >= 1, timeout=15, message="reply")
                await wait_until(lambda: len(receiver.requests) >= 3, timeout=15)
                (reply,) = device.received  # dev-2 (not JSON) and dev-3 (204) send nothing
            assert reply.topic == "devices/dev-1/commands"
            document = json.loads(reply.payload)
            assert document["reply"] == {"command": "sync", "for": "dev-1"}
            by_device = {r.json()["data"]["device_id"]: r for r in receiver.requests}
            assert document["event_id"] == by_device["dev-1"].headers["webhook-id"]
            assert reply.properties.CorrelationData == document["event_id"].encode()
            dev2 = by_device["dev-2"].headers["hookbridge-delivery-id"]

            async def recorded() -> bool:
                d = await bridge.store.get_delivery(dev2)
                return d is not None and d.status.value == "delivered"

            await wait_until(recorded, timeout=10, message="non-JSON answer still delivered")
            attempts = await bridge.store.attempts(dev2)
            assert attempts[-1].error == "pipe: the answer is not JSON"


# -- MQTT 5 request/response --------------------------------------------------------

CORRELATION = b"\x00\xffreq-1\x80"  # not UTF-8: correlation data are bytes, kept exact
REQUEST = EVENT.with_context(
    EventContext(trace_id="1" * 32, response_topic="replies/d1", correlation_data=CORRELATION)
)


def test_plan_reply_answers_the_response_topic_as_is() -> None:
    plan = plan_reply(PIPE, REQUEST, 200, b"temperature=21", "text/plain")
    assert plan == Reply("replies/d1", b"temperature=21", CORRELATION, "text/plain")
    # Not JSON is fine here: the device asked, the answer goes back as the receiver sent it.
    empty = plan_reply(PIPE, REQUEST, 204, None, None)
    assert empty == Reply("replies/d1", b"", CORRELATION, None)
    too_big = plan_reply(PIPE, REQUEST, 200, b"x" * 101, "text/plain")
    assert isinstance(too_big, PipeError) and "pipe_max_reply" in too_big.reason
    wild = EVENT.with_context(EventContext(response_topic="replies/+"))
    refused = plan_reply(PIPE, wild, 200, b"{}", "application/json")
    assert isinstance(refused, PipeError) and "wildcard" in refused.reason


def test_a_response_topic_is_answered_only_within_response_topics() -> None:
    def asking_on(topic: str) -> Event:
        return EVENT.with_context(EventContext(response_topic=topic, correlation_data=b"c"))

    for own in ("replies/d1", "replies/d1/x/y"):
        assert response_topic_problem(PIPE, asking_on(own), own) is None
        assert isinstance(plan_reply(PIPE, asking_on(own), 200, b"ok", None), Reply)
    for other in ("replies/d2", "devices/d2/commands", "replies", "$SYS/x"):
        refused = plan_reply(PIPE, asking_on(other), 200, b"ok", None)
        assert isinstance(refused, PipeError) and "not in response_topics" in refused.reason
        erring = PIPE.model_copy(update={"reply_errors": True})
        failed = AttemptResult("failed", 503, 1.0, "HTTP 503", None, None, None, None)
        error = plan_error_reply(erring, asking_on(other), failed, attempt=1, retrying=True)
        assert isinstance(error, PipeError) and "not in response_topics" in error.reason
    # Without response_topics no Response Topic is answered: the guard is closed by default.
    closed = PIPE.model_copy(update={"response_topics": []})
    refused = plan_reply(closed, asking_on("replies/d1"), 200, b"ok", None)
    assert isinstance(refused, PipeError) and "not in response_topics" in refused.reason


@pytest.mark.parametrize(
    ("templates", "problem"),
    [
        (["replies/{data.device_id"], "replies"),
        (["replies/#/x"], "'#' must be the last level"),
        (["replies/a+b"], "a wildcard must fill a whole level"),
        (["replies/{secret}"], "secret"),
    ],
)
def test_response_topics_must_be_filter_templates(templates: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=r"response_topics") as refused:
        Subscription.model_validate(
            {"name": "p", "url": "http://x.example", "mode": "pipe", "response_topics": templates}
        )
    assert problem in str(refused.value)


def test_plan_reply_without_anywhere_to_go_is_an_error() -> None:
    no_fallback = Subscription.model_validate(
        {"name": "p", "url": "http://x.example", "mode": "pipe", "response_topics": ["replies/#"]}
    )
    plan = plan_reply(no_fallback, EVENT, 200, b'{"a": 1}', "application/json")
    assert isinstance(plan, PipeError)
    assert "no MQTT 5 Response Topic" in plan.reason and "no reply_topic" in plan.reason
    # With a Response Topic the same subscription answers.
    assert isinstance(plan_reply(no_fallback, REQUEST, 200, b"{}", None), Reply)


def test_pipe_fields_need_pipe_mode() -> None:
    for extra in ({"reply_topic": "a/b"}, {"reply_errors": True}, {"response_topics": ["a/#"]}):
        with pytest.raises(ValueError, match="only used with mode 'pipe'"):
            Subscription.model_validate({"name": "p", "url": "http://x.example", **extra})


def test_plan_error_reply_only_when_asked() -> None:
    failed = AttemptResult("failed", 503, 1.0, "HTTP 503", None, None, None, None)
    assert plan_error_reply(PIPE, REQUEST, failed, attempt=1, retrying=True) is None
    asking = PIPE.model_copy(update={"reply_errors": True})
    plan = plan_error_reply(asking, REQUEST, failed, attempt=2, retrying=False)
    assert isinstance(plan, Reply)
    assert (plan.topic, plan.correlation) == ("replies/d1", CORRELATION)
    assert json.loads(plan.payload) == {
        "event_id": "evt_1",
        "error": "HTTP 503",
        "status": 503,
        "attempt": 2,
        "retrying": False,
    }
    fallback = plan_error_reply(asking, EVENT, failed, attempt=1, retrying=True)
    assert isinstance(fallback, Reply) and fallback.topic == "devices/d1/commands"


def _request_answers(request: Any, _n: int) -> Answer:
    device = request.json()["data"]["device_id"]
    if device.startswith("bad"):
        return Answer(503, body=b"overloaded")
    if device == "dev-3":  # the MQTT 3.1.1 device: its reply_topic wraps a JSON answer
        return Answer(200, body=b'{"command": "sync"}')
    return Answer(200, body=f"ack {device}".encode(), headers={"Content-Type": "text/plain"})


def _request_properties(response_topic: str, correlation: bytes) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = response_topic
    properties.CorrelationData = correlation
    return properties


async def test_mqtt5_request_gets_its_answer_with_its_correlation_data(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with receiving(_request_answers) as receiver:
        sub = pipe_subscription(
            receiver,
            "rr",
            reply_topic="devices/{data.device_id}/commands",
            response_topics=["replies/{data.device_id}"],
            reply_errors=True,
        )
        config = bridge_config(mosquitto, tmp_path, [sub], retry={"schedule": ["50ms"]})
        async with running_bridge(config):
            with (
                Publisher(mosquitto.port) as v5,
                Publisher(mosquitto.port, protocol=MQTTProtocolVersion.MQTTv311) as v311,
            ):
                v5.subscribe("replies/#")
                v5.subscribe("devices/dev-5/commands")  # a request's answer must not go here
                v5.subscribe("devices/bad-5/commands")
                v311.subscribe("devices/+/commands")
                info = v5.client.publish(
                    "devices/dev-5/status",
                    "online",
                    qos=1,
                    properties=_request_properties("replies/dev-5", CORRELATION),
                )
                info.wait_for_publish(10)
                bad = v5.client.publish(
                    "devices/bad-5/status",
                    "online",
                    qos=1,
                    properties=_request_properties("replies/bad-5", b"req-bad"),
                )
                bad.wait_for_publish(10)
                # A device asking for an answer on another device's topic gets none.
                v5.client.publish(
                    "devices/dev-6/status",
                    "online",
                    qos=1,
                    properties=_request_properties("replies/dev-5", b"req-stolen"),
                ).wait_for_publish(10)
                v311.publish_all([("devices/dev-3/status", "online")])

                def replies(topic: str) -> list[Any]:
                    return [m for m in v5.received if m.topic == topic]

                await wait_until(
                    lambda: (
                        len(replies("replies/dev-5")) >= 1
                        and len(replies("replies/bad-5")) >= 1
                        and len(v311.received) >= 1
                    ),
                    timeout=20,
                    message="answer, error replies and fallback reply",
                )
                (answer,) = replies("replies/dev-5")  # dev-6's request got nothing there
                assert answer.payload == b"ack dev-5"
                assert answer.properties.CorrelationData == CORRELATION
                assert answer.properties.ContentType.startswith("text/plain")

                # 503 on both attempts: one error reply, once the delivery stops (not one
                # per attempt: the answer could still have come on the retry).
                bad_attempts = [r for r in receiver.requests if "bad-5" in r.body.decode()]
                assert len(bad_attempts) == 2
                (error,) = replies("replies/bad-5")
                assert error.properties.CorrelationData == b"req-bad"
                document = json.loads(error.payload)
                assert (document["retrying"], document["status"], document["attempt"]) == (
                    False,
                    503,
                    2,
                )
                assert document["error"]
                assert error.properties.ContentType == "application/json"

                # MQTT 3.1.1 device: no Response Topic, the reply goes to reply_topic.
                (fallback,) = v311.received
                assert fallback.topic == "devices/dev-3/commands"
                assert json.loads(fallback.payload)["reply"] == {"command": "sync"}
                # The MQTT 5 device's answers went to its Response Topic only.
                assert not [m for m in v5.received if m.topic.startswith("devices/")]


async def test_a_request_answered_after_a_restart_keeps_its_correlation_and_trace(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Response topic, correlation data and trace id are stored with the event."""
    healthy = False

    def answers(_request: Any, _n: int) -> Answer:
        if not healthy:
            return Answer(503)
        return Answer(200, body=b'{"ok": true}', headers={"Content-Type": "application/json"})

    async with receiving(answers) as receiver:
        # No reply_topic: MQTT 5 requests only.
        sub = pipe_subscription(receiver, "rr", response_topics=["replies/#"])
        config = bridge_config(mosquitto, tmp_path, [sub], retry={"schedule": ["2s", "50ms"]})
        with Publisher(mosquitto.port) as device:
            device.subscribe("replies/restart")
            async with running_bridge(config) as bridge:
                device.client.publish(
                    "devices/dev-r/status",
                    "online",
                    qos=1,
                    properties=_request_properties("replies/restart", CORRELATION),
                ).wait_for_publish(10)
                await wait_until(lambda: len(receiver.requests) >= 1, timeout=15)
                delivery_id = receiver.requests[0].headers["hookbridge-delivery-id"]

                async def failed_attempt_recorded() -> bool:
                    return len(await bridge.store.attempts(delivery_id)) >= 1

                await wait_until(failed_attempt_recorded, timeout=10)
            assert device.received == []
            healthy = True
            async with running_bridge(config):  # a new process: nothing kept in memory
                await wait_until(lambda: len(device.received) >= 1, timeout=20, message="answer")
            (answer,) = device.received
            assert answer.payload == b'{"ok": true}'
            assert answer.properties.CorrelationData == CORRELATION
            assert answer.properties.ContentType == "application/json"
            first, second = receiver.requests[:2]
            assert second.headers["hookbridge-delivery-id"] == delivery_id
            trace_ids = {r.headers["traceparent"].split("-")[1] for r in (first, second)}
            assert len(trace_ids) == 1


async def test_a_reply_is_an_outbox_message_within_the_requests_expiry() -> None:
    now = 1_800_000_000.0
    pipe = Pipe(clock=lambda: now)
    sub = Subscription.model_validate(
        {"name": "rr", "url": "http://x.example", "mode": "pipe", "response_topics": ["replies/#"]}
    )
    delivered = AttemptOutcome(DeliveryStatus.DELIVERED)
    answer = AttemptResult("delivered", 200, 1.0, None, "ok", b"ok", None, "text/plain")

    def delivery(expires_at: float | None) -> Delivery:
        context = EventContext(
            response_topic="replies/d1", correlation_data=b"c-1", expires_at=expires_at
        )
        return Delivery("dlv_1", EVENT.with_context(context), "rr", 2, now - 5)

    within = await pipe.after_attempt(sub, delivery(now + 30), answer, delivered)
    assert isinstance(within, OutboxMessage)
    assert (within.id, within.kind, within.source, within.delivery_id) == (
        reply_id("dlv_1", 3),
        OutboxKind.REPLY,
        "rr",
        "dlv_1",
    )
    assert (within.topic, within.payload, within.correlation) == ("replies/d1", b"ok", b"c-1")
    assert (within.content_type, within.max_age, within.expires_at) == ("text/plain", 30, now + 30)
    # No expiry given: the subscription's reply_max_age (1 h by default).
    default = await pipe.after_attempt(sub, delivery(None), answer, delivered)
    assert isinstance(default, OutboxMessage) and default.max_age == 3600
    # The request expired before the answer came: nothing queued, an error on the attempt.
    late = await pipe.after_attempt(sub, delivery(now - 1), answer, delivered)
    assert isinstance(late, str) and "expiry" in late


async def test_an_error_reply_only_when_no_answer_can_come_in_time() -> None:
    now = 1_800_000_000.0
    pipe = Pipe(clock=lambda: now)
    erring = PIPE.model_copy(update={"reply_errors": True})
    failed = AttemptResult("failed", 503, 1.0, "HTTP 503", None, None, None, None)

    def request(expires_at: float | None) -> Delivery:
        context = EventContext(
            response_topic="replies/d1", correlation_data=b"c", expires_at=expires_at
        )
        return Delivery("dlv_1", EVENT.with_context(context), "p", 0, now - 1)

    retry_soon = AttemptOutcome(DeliveryStatus.PENDING, next_attempt_at=now + 5)
    dead = AttemptOutcome(DeliveryStatus.DEAD, reason="exhausted")
    # Retrying within the request's expiry (or with none): the answer may still come.
    assert await pipe.after_attempt(erring, request(now + 60), failed, retry_soon) is None
    assert await pipe.after_attempt(erring, request(None), failed, retry_soon) is None
    # The next try comes after the expiry, or the delivery stops: one error reply now.
    late = await pipe.after_attempt(erring, request(now + 3), failed, retry_soon)
    assert isinstance(late, OutboxMessage) and json.loads(late.payload)["retrying"] is True
    final = await pipe.after_attempt(erring, request(None), failed, dead)
    assert isinstance(final, OutboxMessage) and json.loads(final.payload)["retrying"] is False


async def test_when_several_pipe_subscriptions_want_an_event_the_first_answers() -> None:
    first = PIPE.model_copy(update={"name": "first"})
    second = PIPE.model_copy(update={"name": "second"})
    push = Subscription.model_validate({"name": "push", "url": "http://x.example"})
    pipe = Pipe(clock=lambda: 1_800_000_000.0, wanting=lambda _event: [push, first, second])
    answer = AttemptResult("delivered", 200, 1.0, None, "ok", b"ok", None, "text/plain")
    delivered = AttemptOutcome(DeliveryStatus.DELIVERED)
    context = EventContext(response_topic="replies/d1", correlation_data=b"c")
    event = EVENT.with_context(context)

    def delivery(name: str) -> Delivery:
        return Delivery(f"dlv_{name}", event, name, 0, 1_799_999_999.0)

    assert isinstance(
        await pipe.after_attempt(first, delivery("first"), answer, delivered), OutboxMessage
    )
    assert await pipe.after_attempt(second, delivery("second"), answer, delivered) is None


async def test_a_pipe_subscription_its_filter_plugin_refuses_does_not_take_the_answer(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The first pipe subscription in order answers, but only among those that want the
    event: one whose filter plugin refuses it never receives it, so it must not stand in
    the way of the one that does."""

    def answer(_request: Any, _n: int) -> Answer:
        return Answer(200, body=json.dumps({"command": "sync"}).encode())

    async with receiving(answer) as filtered, receiving(answer) as taking:
        subs = [
            pipe_subscription(
                filtered,
                "even-only",
                reply_topic="devices/{data.device_id}/commands",
                filter_plugin="example_even_seq",
            ),
            pipe_subscription(taking, "all", reply_topic="devices/{data.device_id}/commands"),
        ]
        async with running_bridge(bridge_config(mosquitto, tmp_path, subs)):
            with Publisher(mosquitto.port) as device:
                device.subscribe("devices/+/commands")
                device.publish_all(
                    [("devices/dev-9/events", {"type": "session.started", "id": "o", "seq": 1})]
                )
                await wait_until(lambda: len(device.received) >= 1, timeout=15, message="reply")
            assert filtered.requests == []
            assert json.loads(device.received[0].payload)["reply"] == {"command": "sync"}
