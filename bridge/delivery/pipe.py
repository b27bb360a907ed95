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

**Durable replies.** A reply is not published from here: it becomes a row of
the store's outbox (``kind`` ``reply``, ``source`` the subscription), committed
in the same transaction as the attempt it answers, and the outbox publisher
(:mod:`bridge.inbound.outbox`) publishes it with QoS 1, retried across broker
outages, refusals and restarts. Its id is derived from the delivery and the
attempt number. Should the bridge die after the receiver answered but before
that commit, neither the attempt nor the reply is kept: the delivery is sent
again once its lease lapses and the receiver's new answer is the reply (at
least once, never a reply without its attempt, nor an attempt whose reply is
lost). A reply is never published after its deadline: the request's MQTT 5
Message Expiry when the device gave one (an answer that comes after it is a
pipe error, nothing is queued), else the subscription's ``reply_max_age``.

:func:`plan_reply` and :func:`plan_error_reply` are the pure decisions;
:class:`Pipe` turns them into outbox messages and is the dispatcher's
after-attempt hook.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from bridge.config import Subscription
from bridge.core.events import Event
from bridge.core.outcomes import AttemptOutcome, AttemptResult, DeliveryStatus
from bridge.core.settings.templates import render_topic, topic_matches
from bridge.errors import TemplateError
from bridge.observe.logs import get_logger
from bridge.store.outbox import OutboxKind, OutboxMessage
from bridge.store.rows import Delivery

__all__ = [
    "Pipe",
    "PipeError",
    "Reply",
    "plan_error_reply",
    "plan_reply",
    "reply_id",
    "response_topic_problem",
]

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


def response_topic_problem(subscription: Subscription, event: Event, topic: str) -> str | None:
    """Why a device's Response Topic is not answered, or None when it may be: it must
    be a publishable topic matching one of the subscription's ``response_topics``
    rendered for this event (see :mod:`bridge.core.settings.pipe`)."""
    problem = _topic_problem(topic)
    if problem is not None:
        return f"pipe: the message's response topic {problem}"
    envelope = event.to_dict()
    for template in subscription.response_topics:
        try:
            allowed = render_topic(template, envelope)
        except TemplateError:
            continue  # this event lacks what the template names
        if topic_matches(allowed, topic):
            return None
    return f"pipe: the message's response topic {topic!r} is not in response_topics"


def _response(
    subscription: Subscription, event: Event, topic: str, answer: bytes, content_type: str | None
) -> Reply | PipeError:
    """MQTT 5 request/response: the answer as it is, to the message's Response Topic."""
    problem = response_topic_problem(subscription, event, topic)
    if problem is not None:
        return PipeError(problem)
    limit = subscription.pipe_max_reply
    correlation = event.context.correlation_data if event.context is not None else None
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
        return _response(subscription, event, context.response_topic, answer, content_type)
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
        problem = response_topic_problem(subscription, event, context.response_topic)
        if problem is not None:
            return PipeError(problem)
        return Reply(context.response_topic, payload, context.correlation_data, _JSON)
    topic = _fallback_topic(subscription, event)
    if isinstance(topic, PipeError):
        return topic
    return Reply(topic, payload, event.id.encode("utf-8"), _JSON)


def reply_id(delivery_id: str, attempt: int) -> str:
    """The stable id of the reply to one attempt: recording it twice stores it once."""
    digest = hashlib.sha256(f"{delivery_id}\x00{attempt}".encode()).hexdigest()
    return f"rpl_{digest[:26]}"


def reply_message(
    reply: Reply,
    subscription: Subscription,
    delivery: Delivery,
    *,
    attempt: int,
    now: float,
) -> OutboxMessage | PipeError:
    """The outbox row of ``reply``, with what is left of its time to live."""
    context = delivery.event.context
    if context is not None and context.expires_at is not None:
        max_age = context.expires_at - now
        if max_age <= 0:
            return PipeError("pipe: the request's message expiry passed before the answer")
    else:
        max_age = subscription.reply_max_age
    return OutboxMessage(
        id=reply_id(delivery.id, attempt),
        source=subscription.name,
        topic=reply.topic,
        payload=reply.payload,
        created_at=now,
        max_age=max_age,
        kind=OutboxKind.REPLY,
        correlation=reply.correlation,
        content_type=reply.content_type,
        delivery_id=delivery.id,
    )


def _final(event: Event, outcome: AttemptOutcome) -> bool:
    """Whether a failed attempt is the request's last chance: the delivery stops here,
    or its next try comes after the request's MQTT 5 Message Expiry. Only then is an
    error reply sent (``reply_errors``): one per request, not one per attempt."""
    if outcome.status is not DeliveryStatus.PENDING:
        return True
    expires_at = event.context.expires_at if event.context is not None else None
    due = outcome.next_attempt_at
    return expires_at is not None and due is not None and due >= expires_at


class Pipe:
    """The dispatcher's after-attempt hook: the answers (and errors) of pipe subscriptions
    as outbox messages, committed with their attempts."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        wanting: Callable[[Event], Sequence[Subscription]] | None = None,
    ) -> None:
        self._clock = clock
        # The subscriptions that want an event, in configuration order: when several
        # pipe subscriptions want one, the first answers it (one answer per request).
        self._wanting = wanting
        self.queued = 0
        self.errors = 0

    def _answers(self, subscription: Subscription, event: Event) -> bool:
        if self._wanting is None:
            return True
        pipes = (s.name for s in self._wanting(event) if s.mode == "pipe")
        return next(pipes, subscription.name) == subscription.name

    async def after_attempt(
        self,
        subscription: Subscription,
        delivery: Delivery,
        result: AttemptResult,
        outcome: AttemptOutcome,
    ) -> str | OutboxMessage | None:
        """The reply to commit with the attempt, the error to record on it, or None."""
        if subscription.mode != "pipe" or not self._answers(subscription, delivery.event):
            return None
        if outcome.status is DeliveryStatus.DELIVERED:
            plan = plan_reply(
                subscription,
                delivery.event,
                result.status_code,
                result.response_body,
                result.content_type,
            )
        elif _final(delivery.event, outcome):
            plan = plan_error_reply(
                subscription,
                delivery.event,
                result,
                attempt=delivery.attempts + 1,
                retrying=outcome.status is DeliveryStatus.PENDING,
            )
        else:
            return None  # the answer may still come on a retry, in time
        if plan is None:
            return None
        if isinstance(plan, Reply):
            message = reply_message(
                plan, subscription, delivery, attempt=delivery.attempts + 1, now=self._clock()
            )
            if isinstance(message, OutboxMessage):
                self.queued += 1
                log.debug("answer queued for the broker", topic=plan.topic, id=message.id)
                return message
            plan = message
        self.errors += 1
        log.warning("answer not piped back", reason=plan.reason)
        return plan.reason
