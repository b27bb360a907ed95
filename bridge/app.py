"""The running bridge: wires ingest, normaliser, router, store, dispatcher and sender.

``Bridge(settings).run()`` is the whole service; ``stop()`` asks it to shut
down gracefully. It only wires: the step from a message to stored events and
deliveries is :mod:`bridge.ingest.commit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web

from bridge.admin.accounts.managed import ManagedSubscriptions
from bridge.admin.operations import Operations, ReloadResult
from bridge.admin.server import AdminServer
from bridge.config import Settings
from bridge.core.messages import Outgoing
from bridge.core.normalise import Normaliser
from bridge.core.route import Router
from bridge.delivery.auth import secret_values
from bridge.delivery.dispatch import Dispatcher
from bridge.delivery.pipe import Pipe
from bridge.delivery.retention import Retention
from bridge.delivery.send import Sender
from bridge.errors import StoreError, StoreUnavailable
from bridge.inbound.outbox import OutboxPublisher
from bridge.inbound.server import InboundServer, inbound_routes
from bridge.ingest.client import Ingest
from bridge.ingest.commit import CommitStep
from bridge.ingest.dead_letter import DeadLetters, dead_letter_path
from bridge.ingest.drops import DROPPED_TOPIC, BrokerDrops
from bridge.ingest.presence import PresenceTracker
from bridge.observe.inbound import InboundMetrics
from bridge.observe.logs import get_logger, register_secrets
from bridge.observe.metrics import Metrics
from bridge.observe.otlp import open_spans
from bridge.plugin import load_plugins, wanting
from bridge.store import open_store
from bridge.store.base import Store
from bridge.store.leases import keep_heartbeat
from bridge.store.logsize import watch_log
from bridge.store.rows import IngestResult

__all__ = ["Bridge", "bridge_version"]

log = get_logger("hookbridge.app")


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
        # Optional OTLP export of spans; raises ConfigError when the extra is missing.
        self.spans = open_spans(settings.tracing)
        self.sender = Sender(
            settings,
            user_agent=f"hookbridge/{bridge_version()}",
            spans=self.spans,
            on_resend=lambda name: self.metrics.http_resends.labels(name).inc(),
        )
        # Pipe answers are committed to the outbox with their attempts (see bridge.delivery.pipe).
        # Late bound: a reload replaces the router.
        self.pipe = Pipe(wanting=lambda event: wanting(self.router.match(event), event))
        self.dispatcher = Dispatcher(
            settings,
            self.store,
            self.sender,
            owner=self.owner,
            metrics=self.metrics,
            after_delivery=self.pipe.after_attempt,
            replies_committed=self._replies_committed,
            alert=self._alert,
        )
        self.dead_letters = DeadLetters(dead_letter_path(settings.store))
        self.committer = CommitStep(
            normaliser=self.normaliser,
            router=self.router,
            presence=self.presence,
            store=self.store,
            dead_letters=self.dead_letters,
            metrics=self.metrics,
            owner=self.owner,
            lease=settings.store.lease,
            max_payload=settings.limits.max_payload,
            hand_over=self._hand_over,
            alert=self._alert,
            spans=self.spans,
            packet_window=settings.mqtt.receive_maximum,
        )
        self.drops: BrokerDrops | None = None
        if settings.mqtt.watch_broker_drops:
            self.drops = BrokerDrops(
                self.store, broker=source, metrics=self.metrics, alert=self._alert
            )
        self.ingest = Ingest(
            settings.mqtt,
            filters=self.normaliser.topic_filters(),
            commit=self.committer.commit,
            metrics=self.metrics,
            commit_interval=settings.store.commit_interval,
            watch={DROPPED_TOPIC: self.drops.seen} if self.drops is not None else None,
        )
        self.retention = Retention(
            settings.retention,
            self.store,
            paused=self.dispatcher.paused,
            on_expired=self._expired,
        )
        self.operations = Operations(self)
        # Subscriptions made through the API, kept in the store (applied at run()).
        self.managed = ManagedSubscriptions(self)
        # Accepted inbound webhooks and pipe replies wait in the store's outbox until the
        # broker takes them.
        self.outbox = OutboxPublisher(
            self.store,
            self.publish_reply,
            connected=lambda: self.ingest.connected,
            owner=self.owner,
            lease=settings.store.lease,
            metrics=InboundMetrics(self.metrics.registry),
            alert=self._alert,
            retention=settings.retention,
        )
        # Routes served beside the admin API (inbound webhooks add theirs here before run()).
        self.api_routes: list[web.AbstractRouteDef] = []
        # Inbound webhooks: on api.inbound_listen alone when set, else beside the admin API.
        self.inbound = InboundServer(self)
        if settings.inbound and settings.api.inbound_listen is None:
            self.api_routes.extend(inbound_routes(self))
        self.admin = AdminServer(self, extra_routes=self.api_routes)
        self._stop = asyncio.Event()
        self._store_tasks_stop = asyncio.Event()
        self.started = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------

    async def run(self, *, grace: float = 10.0) -> None:
        await self.store.open()
        await self.sender.start()
        try:
            # Before the lanes are built: the API's subscriptions get theirs too.
            await self.managed.open()
            await self.admin.start()
            await self.inbound.start()
            await self.dispatcher.prepare()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(
                    keep_heartbeat(
                        self.store,
                        interval=self.settings.store.heartbeat,
                        stopping=self._store_tasks_stop,
                    ),
                    name="store-heartbeat",
                )
                tasks.create_task(
                    watch_log(
                        self.store,
                        limit=self.settings.store.log_alert,
                        stopping=self._store_tasks_stop,
                        on_size=self.metrics.store_log_bytes.set,
                        on_large=self._log_large,
                    ),
                    name="store-log",
                )
                tasks.create_task(self.dispatcher.run(), name="dispatcher")
                tasks.create_task(self.retention.run(), name="retention")
                tasks.create_task(self.outbox.run(), name="outbox")
                tasks.create_task(self.ingest.run(), name="ingest")
                tasks.create_task(self.managed.run(), name="managed-subscriptions")
                if self.presence is not None:
                    tasks.create_task(self.presence.run(), name="presence")
                if self.drops is not None:
                    tasks.create_task(self.drops.run(), name="broker-drops")
                self.started.set()
                log.info(
                    "bridge started",
                    subscriptions=[s.name for s in self.settings.subscriptions],
                    filters=self.normaliser.topic_filters(),
                )
                await self._stop.wait()
                log.info("stopping: no new messages, finishing deliveries in flight", grace_s=grace)
                self.outbox.stop()
                self.managed.stop()
                await self.ingest.stop()
                if self.presence is not None:
                    self.presence.stop()
                if self.drops is not None:
                    self.drops.stop()
                await self.dispatcher.stop(grace)
                self.retention.stop()
                self._store_tasks_stop.set()
        finally:
            await self.inbound.stop()
            await self.admin.stop()
            await self.sender.close()
            # Export what is queued; bounded by the exporter's timeout, off the loop.
            await asyncio.to_thread(self.spans.shutdown)
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

    async def _log_large(self, size: int) -> None:
        """The store's write-ahead log passed ``store.log_alert`` (see bridge.store.logsize)."""
        self.metrics.store_log_large.inc()
        limit = self.settings.store.log_alert
        await self._alert(
            "store_log_large", "", {"reason": "log_large", "log_bytes": size, "limit_bytes": limit}
        )

    async def _expired(self, counts: dict[str, int]) -> None:
        """A retention sweep turned deliveries dead as too old: one alert per subscription."""
        for subscription, count in sorted(counts.items()):
            self.metrics.too_old.labels(subscription).inc(count)
            self.metrics.dead.labels(subscription).inc(count)
            await self._alert(
                "deliveries_expired", subscription, {"reason": "too_old", "count": count}
            )

    async def _hand_over(self, result: IngestResult) -> None:
        """Give freshly stored deliveries to the dispatcher; release what it cannot take."""
        overflow = self.dispatcher.offer(result.deliveries, result.heads)
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

    def _replies_committed(self) -> None:
        """Pipe replies were committed with their attempts: the outbox publishes them now."""
        self.outbox.poke()

    async def publish_reply(self, message: Outgoing) -> None:
        """Publish on ingest's connection (the outbox's messages); waits for the PUBACK."""
        await self.ingest.publish(message)

    # -- helpers for the API and tests ---------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC)

    def describe(self) -> dict[str, Any]:
        return {
            "client_id": self.settings.mqtt.client_id,
            "subscriptions": [s.name for s in self.settings.subscriptions],
        }
