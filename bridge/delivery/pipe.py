"""Pipe mode: a receiver's answer routed back to the device over MQTT.

For a subscription with ``mode: pipe``, a 2xx answer whose body is JSON is
published with QoS 1 to the subscription's ``reply_topic`` (rendered from the
event envelope, e.g. ``devices/{data.device_id}/commands``) as::

    {"event_id": "<the event's id>", "reply": <the answer's JSON>}

with the event id as MQTT 5 correlation data. A 204 or an empty body means
nothing to send back. A body that is not JSON, is larger than
``pipe_max_reply``, or whose reply topic cannot be rendered safely is a pipe
error: it is recorded on the attempt, nothing is published, and the delivery
still counts as delivered (the receiver did get the event; sending it again
would not change its answer).

:func:`plan_reply` is the pure decision; :class:`Pipe` publishes it and is
the dispatcher's ``after_delivery`` hook.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

import orjson

from bridge.config import Subscription
from bridge.config.templates import render_topic
from bridge.core.events import Event
from bridge.delivery.send import AttemptResult
from bridge.errors import BrokerError, TemplateError
from bridge.logs import get_logger
from bridge.store.base import Delivery

__all__ = ["Pipe", "PipeError", "Publish", "Reply", "plan_reply"]

log = get_logger("hookbridge.pipe")


class Publish(Protocol):
    def __call__(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """A message to publish back."""

    topic: str
    payload: bytes
    correlation: bytes


@dataclass(frozen=True, slots=True)
class PipeError:
    """Why an answer is not published; recorded on the attempt."""

    reason: str


def plan_reply(
    subscription: Subscription, event: Event, status: int | None, body: bytes | None
) -> Reply | PipeError | None:
    """What to publish for a 2xx answer: a :class:`Reply`, a :class:`PipeError`, or None."""
    if status == 204 or body is None or not body.strip():
        return None
    limit = subscription.pipe_max_reply
    if len(body) > limit:
        return PipeError(f"pipe: the answer is larger than pipe_max_reply ({limit} bytes)")
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return PipeError("pipe: the answer is not JSON")
    template = subscription.reply_topic
    if template is None:  # config guarantees one for mode pipe
        return PipeError("pipe: no reply_topic")
    try:
        topic = render_topic(template, event.to_dict())
    except TemplateError as exc:
        return PipeError(f"pipe: reply topic: {exc}")
    payload = orjson.dumps({"event_id": event.id, "reply": answer})
    return Reply(topic, payload, event.id.encode("utf-8"))


class Pipe:
    """The dispatcher's after-delivery hook: publishes replies of pipe subscriptions."""

    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self.published = 0
        self.errors = 0

    async def after_delivery(
        self, subscription: Subscription, delivery: Delivery, result: AttemptResult
    ) -> str | None:
        """Publish the answer back; the error to record on the attempt, or None."""
        if subscription.mode != "pipe":
            return None
        plan = plan_reply(subscription, delivery.event, result.status_code, result.response_body)
        if plan is None:
            return None
        if isinstance(plan, PipeError):
            self.errors += 1
            log.warning("answer not piped back", reason=plan.reason)
            return plan.reason
        try:
            await self._publish(plan.topic, plan.payload, qos=1, correlation=plan.correlation)
        except BrokerError as exc:
            self.errors += 1
            log.warning("answer could not be published", topic=plan.topic, error=str(exc))
            return f"pipe: publish failed: {exc}"
        self.published += 1
        log.debug("answer piped back", topic=plan.topic)
        return None
