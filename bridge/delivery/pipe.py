"""Pipe mode: a receiver's answer routed back to the device over MQTT.

For a subscription with ``mode: pipe``, the answer of a 2xx goes back to the
device:

* **MQTT 5 request/response.** When the device's message carried a Response
  Topic, the answer's body is published as it is to that topic, with the
  message's Correlation Data (bytes, exact) and the answer's ``Content-Type``
  as the MQTT 5 content type. A 204 or an empty body publishes an empty
  message: the request is answered. The response topic and correlation data
  are kept with the stored event (its side context), so an answer that comes
  on a retry after a restart still finds its way.
* **Fallback: ``reply_topic``.** Otherwise (MQTT 3.1.1, or no Response
  Topic), a JSON answer is published to the subscription's ``reply_topic``
  (rendered from the event envelope, e.g. ``devices/{data.device_id}/commands``)
  as ``{"event_id": "<the event's id>", "reply": <the answer's JSON>}``, with
  the event id as correlation data. A 204 or an empty body sends nothing.

An answer that cannot go anywhere (no Response Topic and no ``reply_topic``),
is not JSON on the fallback path, is larger than ``pipe_max_reply``, or whose
topic is not a valid topic name is a pipe error: it is recorded on the
attempt, nothing is published, and the delivery still counts as delivered
(the receiver did get the event; sending it again would not change its
answer).

With ``reply_errors: true``, a failed attempt (a non-2xx answer, a timeout, a
refused connection) publishes ``{"error": ..., "status": ..., "event_id": ...,
"attempt": n, "retrying": bool}`` to the same place. ``retrying`` says whether
the bridge will try again (and so may still publish the answer later).

:func:`plan_reply` and :func:`plan_error_reply` are the pure decisions;
:class:`Pipe` publishes them and is the dispatcher's after-attempt hook.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from bridge.config import Subscription
from bridge.config.templates import render_topic
from bridge.core.events import Event
from bridge.core.messages import Outgoing, Publish
from bridge.core.outcomes import AttemptOutcome, AttemptResult, DeliveryStatus
from bridge.errors import BrokerError, TemplateError
from bridge.logs import get_logger
from bridge.store.rows import Delivery

__all__ = ["Pipe", "PipeError", "Reply", "plan_error_reply", "plan_reply"]

log = get_logger("hookbridge.pipe")


@dataclass(frozen=True, slots=True)
class Reply:
    """A message to publish back."""

    topic: str
    payload: bytes
    correlation: bytes | None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class PipeError:
    """Why an answer is not published; recorded on the attempt."""

    reason: str


_JSON = "application/json"
_MAX_TOPIC_BYTES = 65535


def _topic_problem(topic: str) -> str | None:
    """Why ``topic`` cannot be published to, or None."""
    if not topic:
        return "is empty"
    if "+" in topic or "#" in topic:
        return "holds a wildcard"
    if "\x00" in topic:
        return "holds a NUL character"
    try:
        if len(topic.encode("utf-8")) > _MAX_TOPIC_BYTES:
            return "is too long"
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def _fallback_topic(subscription: Subscription, event: Event) -> str | PipeError:
    template = subscription.reply_topic
    if template is None:
        return PipeError(
            "pipe: nowhere to send the answer: the message has no MQTT 5 Response Topic "
            "and the subscription has no reply_topic"
        )
    try:
        return render_topic(template, event.to_dict())
    except TemplateError as exc:
        return PipeError(f"pipe: reply topic: {exc}")


def _response(
    topic: str,
    correlation: bytes | None,
    answer: bytes,
    content_type: str | None,
    limit: int,
) -> Reply | PipeError:
    """MQTT 5 request/response: the answer as it is, to the message's Response Topic."""
    problem = _topic_problem(topic)
    if problem is not None:
        return PipeError(f"pipe: the message's response topic {problem}")
    if len(answer) > limit:
        return PipeError(f"pipe: the answer is larger than pipe_max_reply ({limit} bytes)")
    return Reply(topic, answer, correlation, (content_type or None) if answer else None)


def plan_reply(
    subscription: Subscription,
    event: Event,
    status: int | None,
    body: bytes | None,
    content_type: str | None = None,
) -> Reply | PipeError | None:
    """What to publish for a 2xx answer: a :class:`Reply`, a :class:`PipeError`, or None."""
    limit = subscription.pipe_max_reply
    context = event.context
    if context is not None and context.response_topic is not None:
        answer = b"" if status == 204 or body is None else body
        return _response(
            context.response_topic, context.correlation_data, answer, content_type, limit
        )
    if status == 204 or body is None or not body.strip():
        return None
    if len(body) > limit:
        return PipeError(f"pipe: the answer is larger than pipe_max_reply ({limit} bytes)")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return PipeError("pipe: the answer is not JSON")
    topic = _fallback_topic(subscription, event)
    if isinstance(topic, PipeError):
        return topic
    payload = orjson.dumps({"event_id": event.id, "reply": parsed})
    return Reply(topic, payload, event.id.encode("utf-8"), _JSON)


def plan_error_reply(
    subscription: Subscription,
    event: Event,
    result: AttemptResult,
    *,
    attempt: int,
    retrying: bool,
) -> Reply | PipeError | None:
    """What to publish for a failed attempt: an error reply when the subscription asks."""
    if not subscription.reply_errors or result.outcome == "delivered":
        return None
    error = result.error or (
        f"HTTP {result.status_code}" if result.status_code is not None else "failed"
    )
    payload = orjson.dumps(
        {
            "event_id": event.id,
            "error": error,
            "status": result.status_code,
            "attempt": attempt,
            "retrying": retrying,
        }
    )
    context = event.context
    if context is not None and context.response_topic is not None:
        problem = _topic_problem(context.response_topic)
        if problem is not None:
            return PipeError(f"pipe: the message's response topic {problem}")
        return Reply(context.response_topic, payload, context.correlation_data, _JSON)
    topic = _fallback_topic(subscription, event)
    if isinstance(topic, PipeError):
        return topic
    return Reply(topic, payload, event.id.encode("utf-8"), _JSON)


class Pipe:
    """The dispatcher's after-attempt hook: publishes answers (and errors) of pipe subscriptions."""

    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self.published = 0
        self.errors = 0

    async def after_attempt(
        self,
        subscription: Subscription,
        delivery: Delivery,
        result: AttemptResult,
        outcome: AttemptOutcome,
    ) -> str | None:
        """Publish the answer (or the error) back; the error to record on the attempt, or None."""
        if subscription.mode != "pipe":
            return None
        if outcome.status is DeliveryStatus.DELIVERED:
            plan = plan_reply(
                subscription,
                delivery.event,
                result.status_code,
                result.response_body,
                result.content_type,
            )
        else:
            plan = plan_error_reply(
                subscription,
                delivery.event,
                result,
                attempt=delivery.attempts + 1,
                retrying=outcome.status is DeliveryStatus.PENDING,
            )
        if plan is None:
            return None
        if isinstance(plan, PipeError):
            self.errors += 1
            log.warning("answer not piped back", reason=plan.reason)
            return plan.reason
        try:
            await self._publish(
                Outgoing(
                    plan.topic,
                    plan.payload,
                    correlation=plan.correlation,
                    content_type=plan.content_type,
                )
            )
        except BrokerError as exc:
            self.errors += 1
            log.warning("answer could not be published", topic=plan.topic, error=str(exc))
            return f"pipe: publish failed: {exc}"
        self.published += 1
        log.debug("answer piped back", topic=plan.topic)
        return None
