"""The running bridge: wires ingest, normaliser, router, store, dispatcher and sender.

``Bridge(settings).run()`` is the whole service; ``stop()`` asks it to shut
down gracefully. The commit step of ingest lives here because it spans
normalise → route → store → dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web

from bridge.admin.metrics import Metrics
from bridge.admin.operations import Operations, ReloadResult
from bridge.admin.server import AdminServer
from bridge.config import Settings, Subscription
from bridge.core.normalise import Message, Normalised, Normaliser, Rejected
from bridge.core.outcomes import AttemptOutcome, AttemptResult, DeliveryStatus
from bridge.core.route import Router
from bridge.core.trace import context_for, freshness_start
from bridge.delivery.auth import secret_values
from bridge.delivery.dispatch import Dispatcher
from bridge.delivery.pipe import Pipe
from bridge.delivery.retention import Retention
from bridge.delivery.send import Sender
from bridge.errors import StoreError, StoreUnavailable
from bridge.inbound.server import InboundServer, inbound_routes
from bridge.ingest.client import Ingest
from bridge.ingest.dead_letter import DeadLetters, dead_letter_path
from bridge.ingest.presence import PresenceTracker
from bridge.logs import get_logger, register_secrets
from bridge.plugin import filter_allows, load_plugins
from bridge.store import open_store
from bridge.store.base import Accepted, Delivery, IngestResult, Rejection, Store
from bridge.store.leases import keep_heartbeat

__all__ = ["Bridge", "bridge_version"]

log = get_logger("hookbridge.app")

_POISON_TRIES = 3


def _rejection_key(rejection: Rejection) -> str:
    """A stable name of one rejected message across commit retries."""
    digest = hashlib.sha256(rejection.topic.encode("utf-8", "surrogatepass") + b"\x00")
    digest.update(rejection.payload)
    digest.update(repr(rejection.received_at).encode())
    return "rej_" + digest.hexdigest()[:32]


def bridge_version() -> str:
    try:
        return version("hookbridge")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0"


class Bridge:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        config_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path  # what reload() re-reads
        register_secrets(secret_values(settings))
        load_plugins()  # before the normaliser: plugins add profiles and formats
        self.metrics = Metrics()
        self.owner = settings.mqtt.client_id
        self.store: Store = (
            store if store is not None else open_store(settings.store, owner=self.owner)
        )
        source = f"mqtt://{settings.mqtt.host}:{settings.mqtt.port}"
        self.normaliser = Normaliser(settings, source=source)
        self.router = Router(settings.subscriptions)
        self.presence: PresenceTracker | None = (
            PresenceTracker(
                settings.presence,
                self.store,
                self.router,
                source=source,
                owner=self.owner,
                lease=settings.store.lease,
                hand_over=self._hand_over,
            )
            if settings.presence.enabled
            else None
        )
        self.sender = Sender(settings, user_agent=f"hookbridge/{bridge_version()}")
        self.pipe = Pipe(self.publish_reply)
        self.dispatcher = Dispatcher(
            settings,
            self.store,
            self.sender,
            owner=self.owner,
            metrics=self.metrics,
            after_delivery=self._after_attempt,
            alert=self._alert,
        )
        self.ingest = Ingest(
            settings.mqtt,
            filters=self.normaliser.topic_filters(),
            commit=self.commit,
            metrics=self.metrics,
            commit_interval=settings.store.commit_interval,
        )
        self.dead_letters = DeadLetters(dead_letter_path(settings.store))
        self.retention = Retention(
            settings.retention,
            self.store,
            paused=self.dispatcher.paused,
            on_expired=self._expired,
        )
        self.operations = Operations(self)
        # Routes served beside the admin API (inbound webhooks add theirs here before run()).
        self.api_routes: list[web.AbstractRouteDef] = []
        # Inbound webhooks: on api.inbound_listen alone when set, else beside the admin API.
        self.inbound = InboundServer(self)
        if settings.inbound and settings.api.inbound_listen is None:
            self.api_routes.extend(inbound_routes(self))
        self.admin = AdminServer(self, extra_routes=self.api_routes)
        self._stop = asyncio.Event()
        self._heartbeat_stop = asyncio.Event()
        self.started = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------

    async def run(self, *, grace: float = 10.0) -> None:
        await self.store.open()
        await self.sender.start()
        try:
            await self.admin.start()
            await self.inbound.start()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(
                    keep_heartbeat(
                        self.store,
                        interval=self.settings.store.heartbeat,
                        stopping=self._heartbeat_stop,
                    ),
                    name="store-heartbeat",
                )
                tasks.create_task(self.dispatcher.run(), name="dispatcher")
                tasks.create_task(self.retention.run(), name="retention")
                tasks.create_task(self.ingest.run(), name="ingest")
                if self.presence is not None:
                    tasks.create_task(self.presence.run(), name="presence")
                self.started.set()
                log.info(
                    "bridge started",
                    subscriptions=[s.name for s in self.settings.subscriptions],
                    filters=self.normaliser.topic_filters(),
                )
                await self._stop.wait()
                log.info("stopping: no new messages, finishing deliveries in flight", grace_s=grace)
                await self.ingest.stop()
                if self.presence is not None:
                    self.presence.stop()
                await self.dispatcher.stop(grace)
                self.retention.stop()
                self._heartbeat_stop.set()
        finally:
            await self.inbound.stop()
            await self.admin.stop()
            await self.sender.close()
            with contextlib.suppress(StoreError):
                await self.store.close()
            log.info("bridge stopped")

    def stop(self) -> None:
        self._stop.set()

    async def ready(self) -> bool:
        """Broker connected and the store takes writes."""
        return (
            self.ingest.connected
            and not self.ingest.store_blocked
            and await self.store.is_writable()
        )

    async def reload(self) -> ReloadResult:
        """Re-read the configuration file (SIGHUP, ``POST /api/reload``); see Operations."""
        return await self.operations.reload()

    async def _alert(self, kind: str, subscription: str, details: dict[str, object]) -> None:
        await self.operations.alert(kind, subscription, details)

    async def _expired(self, counts: dict[str, int]) -> None:
        """A retention sweep turned deliveries dead as too old: one alert per subscription."""
        for subscription, count in sorted(counts.items()):
            self.metrics.too_old.labels(subscription).inc(count)
            self.metrics.dead.labels(subscription).inc(count)
            await self._alert(
                "deliveries_expired", subscription, {"reason": "too_old", "count": count}
            )

    # -- the commit step of ingest ------------------------------------------------------

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
        except StoreError:
            # One item the store cannot take must not stop the others, nor come
            # back forever as a broker redelivery: store the batch item by item.
            log.exception("batch commit failed; storing its items one by one")
            await self._store_one_by_one(accepted, rejected)

    async def _store_one_by_one(
        self, accepted: Sequence[Accepted], rejected: Sequence[Rejection]
    ) -> None:
        """Store a refused batch item by item; an item refused for itself is quarantined.

        If a quarantine cannot be written either, nothing is acknowledged
        (:class:`StoreUnavailable`): the batch comes back and is tried again,
        until that item has used its tries and goes to the dead-letter file.
        """
        for rejection in rejected:
            await self._quarantine(rejection, key=_rejection_key(rejection))
        for item in accepted:
            try:
                await self._store_batch([item], [])
            except StoreUnavailable:
                raise
            except StoreError as exc:
                log.error("quarantined an event the store refuses", event_id=item.event.id)
                quarantined = Rejection(
                    received_at=item.received_at,
                    topic=item.event.source,
                    payload=item.event.body()[: self.settings.limits.max_payload],
                    reason="store_error",
                    detail=f"the store refused this event: {type(exc).__name__}",
                )
                await self._quarantine(quarantined, key=item.event.id)

    async def _quarantine(self, rejection: Rejection, *, key: str) -> None:
        try:
            await self._store_batch([], [rejection])
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if not self.dead_letters.refused(key):
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
                self.dead_letters.write(key, record, rejection.payload)
            except StoreError as written:
                raise StoreUnavailable(str(written)) from written
            log.error(
                "the store refuses a message even in quarantine; written to the dead-letter file",
                key=key,
                file=str(self.dead_letters.path),
            )
            self.metrics.rejected.labels("dead_letter").inc()
            await self._alert_safely(
                "store_refused",
                {"reason": "dead_letter", "key": key, "file": str(self.dead_letters.path)},
            )
        else:
            self.dead_letters.forget(key)
            self.metrics.rejected.labels(rejection.reason).inc()

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
        return accepted, rejected

    def _classify(
        self, message: Message, accepted: list[Accepted], rejected: list[Rejection]
    ) -> None:
        received = message.received_at.timestamp()
        result = self.normaliser.normalise(message)
        if isinstance(result, Rejected):
            rejected.append(
                Rejection(
                    received_at=received,
                    topic=message.topic,
                    payload=message.payload[: self.settings.limits.max_payload],
                    reason=result.reason,
                    detail=result.detail,
                )
            )
            self.metrics.rejected.labels(result.reason).inc()
            log.warning(
                "message rejected", topic=message.topic, reason=result.reason, detail=result.detail
            )
            return
        accepted.append(self._accept(result, message, received))

    def _accept(self, result: Normalised, message: Message, received: float) -> Accepted:
        event = result.event.with_context(
            context_for(
                message.user_properties,
                entropy=os.urandom(16),
                response_topic=message.response_topic,
                correlation_data=message.correlation_data,
            )
        )
        if self.presence is not None:
            event = self.presence.annotate(event)
        subscriptions = tuple(
            s.name
            for s in self.router.match(event)
            if s.filter_plugin is None or filter_allows(s.filter_plugin, event.to_dict())
        )
        self.metrics.events_received.labels(event.type).inc()
        return Accepted(
            event=event,
            subscriptions=subscriptions,
            received_at=received,
            content_hash=result.content_hash,
            redelivery=message.dup,
            presence=(
                self.presence.observe(event, at=received, retained=message.retain)
                if self.presence is not None
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
                        payload=message.payload[: self.settings.limits.max_payload],
                        reason="processing_error",
                        detail=f"processing failed {_POISON_TRIES} times: {failure}",
                    )
                )
                self.metrics.rejected.labels("processing_error").inc()
        return accepted, rejected

    async def _store_batch(self, accepted: list[Accepted], rejected: list[Rejection]) -> None:
        now = time.time()
        started = time.perf_counter()
        result = await self.store.ingest(
            accepted,
            rejected,
            now=now,
            owner=self.owner,
            lease_until=now + self.settings.store.lease,
            presence=self.presence.policy if self.presence is not None else None,
        )
        self.metrics.store_commit_latency.observe(time.perf_counter() - started)
        self.metrics.ingest_batch_size.observe(len(accepted) + len(rejected))
        if result.duplicates:
            self.metrics.events_duplicate.inc(result.duplicates)
        await self._hand_over(result)

    async def _hand_over(self, result: IngestResult) -> None:
        """Give freshly stored deliveries to the dispatcher; release what it cannot take."""
        overflow = self.dispatcher.offer(result.deliveries)
        if overflow:
            try:
                await self.store.release(overflow)
            except StoreUnavailable:
                # The leases run out on their own; the lanes claim them then.
                log.warning("could not release overflow deliveries", count=len(overflow))
                return
            # Released now: their lanes (ordered ones claim only from the store) look again.
            released = set(overflow)
            for name in {d.subscription for d in result.deliveries if d.id in released}:
                self.dispatcher.poke(name)

    async def _after_attempt(
        self,
        subscription: Subscription,
        delivery: Delivery,
        result: AttemptResult,
        outcome: AttemptOutcome,
    ) -> str | None:
        """After every attempt: freshness of a delivered event, then pipe mode's answer."""
        if outcome.status is DeliveryStatus.DELIVERED:
            start = freshness_start(delivery.event.timestamp, delivery.created_at)
            self.metrics.freshness.labels(subscription.name).observe(max(0.0, time.time() - start))
        return await self.pipe.after_attempt(subscription, delivery, result, outcome)

    async def publish_reply(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation: bytes | None = None,
        content_type: str | None = None,
    ) -> None:
        """Publish on ingest's connection (pipe replies, inbound webhooks); waits for the PUBACK."""
        await self.ingest.publish(
            topic,
            payload,
            qos=qos,
            retain=retain,
            correlation=correlation,
            content_type=content_type,
        )

    # -- helpers for the API and tests ---------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC)

    def describe(self) -> dict[str, Any]:
        return {
            "client_id": self.settings.mqtt.client_id,
            "subscriptions": [s.name for s in self.settings.subscriptions],
        }
