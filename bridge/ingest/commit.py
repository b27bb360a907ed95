"""The commit step of ingest: from MQTT messages to stored events and deliveries.

One batch of messages reads top to bottom here: each message is normalised
(profiles, rules), annotated with presence, routed to the subscriptions that
want it (with their filter plugins), and the whole batch is committed in one
transaction before the broker gets its acknowledgements; the new deliveries
are then handed to the dispatcher. What breaks is isolated, never the batch:

- a message that crashes processing is tried three times, then quarantined
  (``processing_error``) while the others go on;
- a batch whose commit fails with anything but an unavailable store (a value
  the store cannot encode, a constraint, a bug) is committed in halves until
  the messages that fail stand alone; each of those is quarantined as a
  rejection (``store_error``, with the reason and an excerpt) and
  acknowledged, and the rest commit. If even the quarantine cannot be
  written, nothing is acknowledged (:class:`~bridge.errors.StoreUnavailable`)
  until that message has used its tries and goes to the dead-letter file;
- a store that is unavailable (lock, timeout, shutdown, full disk) raises
  :class:`~bridge.errors.StoreUnavailable`: ingest keeps the batch
  unacknowledged and tries again. It never bisects.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from bridge.core.normalise import Message, Normalised, Normaliser, Rejected
from bridge.core.route import Router
from bridge.core.trace import context_for, trace_of
from bridge.errors import StoreError, StoreUnavailable
from bridge.ingest.dead_letter import DeadLetters
from bridge.ingest.presence import PresenceTracker
from bridge.observe.logs import get_logger
from bridge.observe.metrics import Metrics
from bridge.observe.spans import NoSpans, Span, Spans, receive_span_id
from bridge.plugin import wanting
from bridge.store import packets
from bridge.store.base import Store
from bridge.store.ids import random_bytes
from bridge.store.rows import Accepted, IngestResult, Packet, Rejection

__all__ = ["CommitStep"]

log = get_logger("hookbridge.app")

_POISON_TRIES = 3

HandOver = Callable[[IngestResult], Awaitable[None]]
Alert = Callable[[str, str, dict[str, object]], Awaitable[None]]


class CommitStep:
    """``commit(messages)`` is what ingest calls with each batch (see the module docstring)."""

    def __init__(
        self,
        *,
        normaliser: Normaliser,
        router: Router,
        presence: PresenceTracker | None,
        store: Store,
        dead_letters: DeadLetters,
        metrics: Metrics,
        owner: str,
        lease: float,
        max_payload: int,
        hand_over: HandOver,
        alert: Alert,
        spans: Spans | None = None,
        packet_window: int = 0,
    ) -> None:
        self._spans: Spans = spans if spans is not None else NoSpans()
        self._normaliser = normaliser
        self._router = router
        self._presence = presence
        self._store = store
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._owner = owner
        self._lease = lease
        self._max_payload = max_payload
        self._hand_over = hand_over
        self._alert = alert
        # How many committed messages a redelivery is compared with: the broker's
        # in-flight window (our Receive Maximum); see bridge.store.packets.
        self._packet_window = packet_window

    def reconfigure(
        self, *, normaliser: Normaliser, router: Router, lease: float, max_payload: int
    ) -> None:
        """Adopt a reloaded configuration's parts (the next batch uses them)."""
        self._normaliser = normaliser
        self._router = router
        self._lease = lease
        self._max_payload = max_payload

    async def commit(self, messages: Sequence[Message]) -> None:
        """Normalise, route and store a batch in one transaction; hand deliveries over."""
        try:
            accepted, rejected = self._prepare(messages)
        except Exception:
            # Some message breaks processing itself: find it one by one.
            log.exception("batch processing failed; isolating the message that breaks it")
            accepted, rejected = self._prepare_one_by_one(messages)
        try:
            await self._store_batch(accepted, rejected)
        except StoreUnavailable:
            raise  # ingest keeps the batch unacknowledged and tries again
        except Exception as exc:  # noqa: BLE001 - any refusal is narrowed down (below)
            # What the store refuses must not stop the others, nor come back
            # forever as a broker redelivery: find the items it refuses.
            log.warning(
                "batch commit failed; narrowing it down to what the store refuses",
                error=_reason(exc),
                size=len(accepted) + len(rejected),
            )
            await self._narrow([*accepted, *rejected], exc)

    async def _narrow(self, items: Sequence[Accepted | Rejection], error: Exception) -> None:
        """Commit ``items`` (refused together with ``error``) in halves, until each item
        the store refuses stands alone; quarantine those. Order is kept: the first half
        commits before the second."""
        if len(items) == 1:
            await self._quarantine_refused(items[0], error)
            return
        half = len(items) // 2
        for part in (items[:half], items[half:]):
            try:
                await self._store_batch(
                    [i for i in part if isinstance(i, Accepted)],
                    [i for i in part if isinstance(i, Rejection)],
                )
            except StoreUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - narrowed down, then quarantined
                await self._narrow(part, exc)

    async def _quarantine_refused(self, item: Accepted | Rejection, error: Exception) -> None:
        """Keep an item the store refuses alone as a ``store_error`` rejection."""
        if isinstance(item, Rejection):
            topic, payload, key = item.topic, item.payload, _rejection_key(item)
            received = item.received_at
        else:
            topic, key, received = item.event.source, item.event.id, item.received_at
            payload = _body_excerpt(item, self._max_payload)
        log.error("quarantined a message the store refuses", key=key, error=_reason(error))
        quarantined = Rejection(
            received_at=received,
            topic=_printable(topic),
            payload=payload[: self._max_payload],
            reason="store_error",
            detail=f"the store refused this message: {_reason(error)}",
            packet=item.packet,
        )
        await self._quarantine(quarantined, key=key)

    async def _quarantine(self, rejection: Rejection, *, key: str) -> None:
        try:
            await self._store_batch([], [rejection])
        except StoreUnavailable:
            raise
        except Exception as exc:
            if not self._dead_letters.refused(key):
                raise StoreUnavailable(
                    "the store refuses to keep a quarantined message; not acknowledging"
                ) from exc
            try:
                record = {
                    "received_at": rejection.received_at,
                    "topic": rejection.topic,
                    "reason": rejection.reason,
                    "detail": rejection.detail,
                }
                self._dead_letters.write(key, record, rejection.payload)
            except StoreError as written:
                raise StoreUnavailable(str(written)) from written
            log.error(
                "the store refuses a message even in quarantine; written to the dead-letter file",
                key=key,
                file=str(self._dead_letters.path),
            )
            self._metrics.rejected.labels("dead_letter").inc()
            await self._alert_safely(
                "store_refused",
                {"reason": "dead_letter", "key": key, "file": str(self._dead_letters.path)},
            )
        else:
            self._dead_letters.forget(key)
            self._metrics.rejected.labels(rejection.reason).inc()

    async def _alert_safely(self, kind: str, details: dict[str, object]) -> None:
        try:
            await self._alert(kind, "", details)
        except Exception:  # an alert must never undo what it reports
            log.exception("alert failed", kind=kind)

    def _prepare(self, messages: Sequence[Message]) -> tuple[list[Accepted], list[Rejection]]:
        accepted: list[Accepted] = []
        rejected: list[Rejection] = []
        for message in messages:
            self._classify(message, accepted, rejected)
        self._count_types(accepted)
        return accepted, rejected

    def _count_types(self, accepted: Sequence[Accepted]) -> None:
        """``hookbridge_events_received_total`` by type, once a batch (a counter's
        ``labels()`` takes a lock each time)."""
        for event_type, count in Counter(item.event.type for item in accepted).items():
            self._metrics.events_received.labels(event_type).inc(count)

    def _classify(
        self, message: Message, accepted: list[Accepted], rejected: list[Rejection]
    ) -> None:
        received = message.received_at.timestamp()
        result = self._normaliser.normalise(message)
        if isinstance(result, Rejected) and not message.payload:
            # An empty message is how a retained one is cleared (a device's status, when
            # it is removed), and the broker passes the clearing on to subscribers: no
            # event, and nothing wrong. It is acknowledged with the batch.
            log.debug("empty message: a retained message cleared", topic=message.topic)
            return
        if isinstance(result, Rejected):
            rejected.append(
                Rejection(
                    received_at=received,
                    topic=message.topic,
                    payload=message.payload[: self._max_payload],
                    reason=result.reason,
                    detail=result.detail,
                    packet=_packet(message),
                )
            )
            self._metrics.rejected.labels(result.reason).inc()
            log.warning(
                "message rejected", topic=message.topic, reason=result.reason, detail=result.detail
            )
            return
        accepted.append(self._accept(result, message, received))

    def _accept(self, result: Normalised, message: Message, received: float) -> Accepted:
        # The event's side context: its trace (the device's continued, or one
        # started now) and the MQTT 5 request properties a pipe answers to.
        event = result.event.with_context(
            context_for(
                message.user_properties,
                entropy=random_bytes(16),
                response_topic=message.response_topic,
                correlation_data=message.correlation_data,
                expires_at=(
                    None
                    if message.message_expiry is None
                    else message.received_at.timestamp() + message.message_expiry
                ),
            )
        )
        if self._presence is not None:
            event = self._presence.annotate(event)
        subscriptions = tuple(s.name for s in wanting(self._router.match(event), event))
        return Accepted(
            event=event,
            subscriptions=subscriptions,
            received_at=received,
            packet=_packet(message),
            redelivery=message.dup,
            presence=(
                self._presence.observe(event, at=received, retained=message.retain)
                if self._presence is not None
                else None
            ),
        )

    def _prepare_one_by_one(
        self, messages: Sequence[Message]
    ) -> tuple[list[Accepted], list[Rejection]]:
        accepted: list[Accepted] = []
        rejected: list[Rejection] = []
        for message in messages:
            failure = ""
            for _ in range(_POISON_TRIES):
                try:
                    self._classify(message, accepted, rejected)
                except Exception as exc:  # noqa: BLE001 - any crash makes the message poison
                    failure = type(exc).__name__
                else:
                    failure = ""
                    break
            if failure:
                log.error("quarantined a message that breaks processing", topic=message.topic)
                rejected.append(
                    Rejection(
                        received_at=message.received_at.timestamp(),
                        topic=message.topic,
                        payload=message.payload[: self._max_payload],
                        reason="processing_error",
                        detail=f"processing failed {_POISON_TRIES} times: {failure}",
                        packet=_packet(message),
                    )
                )
                self._metrics.rejected.labels("processing_error").inc()
        self._count_types(accepted)
        return accepted, rejected

    async def _store_batch(self, accepted: list[Accepted], rejected: list[Rejection]) -> None:
        now = time.time()
        started = time.perf_counter()
        result = await self._store.ingest(
            accepted,
            rejected,
            now=now,
            owner=self._owner,
            lease_until=now + self._lease,
            presence=self._presence.policy if self._presence is not None else None,
            ordered=self._router.ordered,
            packet_window=self._packet_window,
            owners=self._router.owners,
        )
        self._metrics.store_commit_latency.observe(time.perf_counter() - started)
        self._metrics.ingest_batch_size.observe(len(accepted) + len(rejected))
        if result.duplicates:
            self._metrics.events_duplicate.inc(result.duplicates)
        if self._spans.enabled:
            self._receive_spans(accepted, committed=time.time())
        await self._hand_over(result)

    def _receive_spans(self, accepted: list[Accepted], *, committed: float) -> None:
        """One ``hookbridge.receive`` span per event: MQTT receipt → stored."""
        for item in accepted:
            event = item.event
            context = event.context
            trace = trace_of(event.id, context)
            try:
                self._spans.record(
                    Span(
                        "hookbridge.receive",
                        trace_id=trace.trace_id,
                        span_id=receive_span_id(event.id),
                        parent_id=context.parent_id if context is not None else None,
                        flags=trace.flags,
                        start=item.received_at,
                        end=committed,
                        attributes={
                            "hookbridge.event_id": event.id,
                            "hookbridge.event_type": event.type,
                            "hookbridge.device_id": event.device_id or "",
                            "hookbridge.deliveries": len(item.subscriptions),
                            "messaging.system": "mqtt",
                        },
                    )
                )
            except Exception:  # export must never touch ingest
                log.warning("could not record a receive span", exc_info=True)


def _packet(message: Message) -> Packet | None:
    """The PUBLISH a message came in, for the packet log; None for QoS 0."""
    if not message.packet_id:
        return None
    return Packet(
        message.packet_id, message.connection, packets.digest(message.topic, message.payload)
    )


def _reason(exc: BaseException) -> str:
    """What went wrong, short enough for a rejection's detail and a log line."""
    text = _printable(str(exc).strip())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _printable(text: str) -> str:
    """``text`` as the store can always keep it (a topic may carry undecodable bytes)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _body_excerpt(item: Accepted, limit: int) -> bytes:
    """The event's body, or what can be shown of it when even that fails."""
    try:
        return item.event.body()[:limit]
    except Exception:  # noqa: BLE001 - the excerpt of a poison event must not raise
        return repr(item.event.data)[:limit].encode("utf-8", "replace")


def _rejection_key(rejection: Rejection) -> str:
    """A stable name of one rejected message across commit retries."""
    digest = hashlib.sha256(rejection.topic.encode("utf-8", "surrogatepass") + b"\x00")
    digest.update(rejection.payload)
    digest.update(repr(rejection.received_at).encode())
    return "rej_" + digest.hexdigest()[:32]
