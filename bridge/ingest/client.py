"""MQTT ingest: paho-mqtt driven from the asyncio loop, with manual acknowledgement.

paho runs without a thread of its own (:mod:`bridge.ingest.driver`).
Messages are collected into batches; a batch is handed to the ``commit``
callback (normalise, route, store in one transaction) and only after that
returns are its messages PUBACKed, on the connection they came on. A message
from an older connection is never acked: the broker redelivers it on the
new one and the store recognises it.

While the store refuses writes, batches are retried with backoff and nothing
is acked, so the broker keeps the messages (its in-flight window bounds how
many we hold).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.config import MqttSettings
from bridge.core.events import new_event_id
from bridge.core.messages import Outgoing
from bridge.core.normalise import Message
from bridge.errors import BrokerError, StoreUnavailable
from bridge.ingest.driver import SocketDriver
from bridge.ingest.gathering import ArrivalRate, gather, gather_time, quiet_gap
from bridge.ingest.wire import ReadAheadClient, connect, new_client, status_topic
from bridge.observe.logs import get_logger
from bridge.observe.metrics import Metrics
from bridge.store.ids import random_bytes

__all__ = ["CommitBatch", "Ingest", "Received", "status_topic"]

log = get_logger("hookbridge.ingest")


@dataclass(frozen=True, slots=True)
class Received:
    """A message as it came off one connection, with what acking it needs."""

    message: Message
    mid: int
    qos: int
    connection: int  # which connection it arrived on


CommitBatch = Callable[[Sequence[Message]], Awaitable[None]]


class Ingest:
    """One MQTT connection: subscribe, batch, commit, then acknowledge."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        filters: Sequence[str],
        commit: CommitBatch,
        metrics: Metrics,
        commit_interval: float = 0.005,
        watch: Mapping[str, Callable[[bytes], None]] | None = None,
    ) -> None:
        self._settings = settings
        # Broker topics read directly, never shared and never committed (bridge.ingest.drops).
        self._watch = dict(watch or {})
        self._watch_mid: int | None = None
        self._filters = [
            f"$share/{settings.shared_group}/{f}" if settings.shared_group else f for f in filters
        ]
        self._commit = commit
        self._metrics = metrics
        self._commit_interval = commit_interval
        self._max_batch = settings.receive_maximum
        self._client = self._make_client()
        self._connection = 0
        # The connection's name in the store's packet log: unique across restarts.
        self._connection_id = ""
        # Messages of the current connection received and not yet acknowledged, by
        # packet identifier: a DUP copy of one of them is dropped (bridge.store.packets).
        self._unacked: dict[int, tuple[str, bytes]] = {}
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._ever_connected = False
        self._pending: list[Received] = []
        self._read_limit = 2 * settings.receive_maximum
        self._driver = SocketDriver(
            self._client, full=lambda: len(self._pending) >= self._read_limit
        )
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._publishes: dict[int, asyncio.Future[None]] = {}
        self._misc_task: asyncio.Task[None] | None = None
        self._refused: str | None = None  # why the broker refused our last CONNECT
        self.store_blocked = False
        self.store_error: str | None = None  # why the last commit failed, while blocked

    # -- public ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        """Connected and the broker has granted our subscriptions."""
        return self._connected.is_set() and self._subscribed.is_set()

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def run(self) -> None:
        """Connect (and reconnect with backoff) and commit batches until stopped."""
        self._driver.loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._connection_keeper(), name="mqtt-connection")
            tasks.create_task(self._batcher(), name="mqtt-batcher")

    async def stop(self) -> None:
        """Stop taking messages: the current batch is committed and acked, then we leave.

        Messages not yet committed stay unacknowledged; the broker keeps them in
        our persistent session and sends them again when we come back.
        """
        self._stopping = True
        self._stop_requested.set()
        self._arrived.set()
        self._full.set()

    async def publish(self, message: Outgoing, *, timeout: float = 10.0) -> None:
        """Publish and wait for the broker's PUBACK (QoS 1) or the write (QoS 0).

        ``correlation`` and ``content_type`` are MQTT 5 properties: on a 3.1.1
        connection they are not sent.
        """
        if not self.connected:
            raise BrokerError("not connected to the broker")
        topic, correlation, content_type = message.topic, message.correlation, message.content_type
        properties = None
        if (correlation is not None or content_type) and self._settings.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if correlation is not None:
                properties.CorrelationData = correlation
            if content_type:
                properties.ContentType = content_type
        info = self._client.publish(
            topic, message.payload, qos=message.qos, retain=message.retain, properties=properties
        )
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        if message.qos == 0 or info.is_published():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._publishes[info.mid] = future
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BrokerError(f"no PUBACK for {topic!r} within {timeout:g}s") from None
        finally:
            self._publishes.pop(info.mid, None)

    # -- the paho client ---------------------------------------------------------

    def _make_client(self) -> ReadAheadClient:
        client = new_client(self._settings, will_topic=status_topic(self._settings.client_id))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(
        self,
        client: paho.Client,
        _u: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if reason.is_failure:
            # The keeper waits before it tries again, longer each time (see below).
            self._refused = str(reason)
            return
        self._connection += 1
        self._connection_id = os.urandom(8).hex()
        self._unacked.clear()
        self._subscribed.clear()
        # Messages of the old connection not yet in a commit can never be acked
        # now; the broker sends them again on this one. Holding them would only
        # pile up duplicates at every reconnect.
        self._pending = [r for r in self._pending if r.connection == self._connection]
        if self._ever_connected and not flags.session_present:
            log.warning(
                "broker has no session for us: messages sent while we were away are lost "
                "unless the broker kept them (check session expiry and broker persistence)"
            )
        self._ever_connected = True
        if self._settings.protocol == "5":
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in self._filters])
        else:
            client.subscribe([(f, 1) for f in self._filters])
        if self._watch:  # on its own: a broker that refuses $SYS refuses only this
            _, self._watch_mid = client.subscribe([(topic, 0) for topic in self._watch])
        client.publish(status_topic(self._settings.client_id), b"online", qos=1, retain=True)
        self._connected.set()
        self._metrics.broker_connected.set(1)
        log.info(
            "connected to broker",
            url=self._settings.url,
            session_present=bool(flags.session_present),
            filters=self._filters,
        )

    def _on_disconnect(
        self,
        _c: paho.Client,
        _u: Any,
        _f: paho.DisconnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._metrics.broker_connected.set(0)
        for future in self._publishes.values():
            if not future.done():
                future.set_exception(BrokerError("connection lost before PUBACK"))
        if was_connected and not self._stopping:
            log.warning("disconnected from broker", reason=str(reason))

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        # An exception escaping here would make paho drop the connection.
        try:
            topic = msg._topic.decode("utf-8", "surrogateescape")
            watcher = self._watch.get(topic)
            if watcher is not None:
                watcher(bytes(msg.payload))
                return
            properties = msg.properties
            content_type = getattr(properties, "ContentType", None) if properties else None
            user_props = getattr(properties, "UserProperty", None) if properties else None
            response_topic = getattr(properties, "ResponseTopic", None) if properties else None
            correlation = getattr(properties, "CorrelationData", None) if properties else None
            expiry = getattr(properties, "MessageExpiryInterval", None) if properties else None
            payload = bytes(msg.payload)
            if msg.qos > 0 and self._is_unacked_copy(msg.mid, topic, payload, dup=bool(msg.dup)):
                self._metrics.events_duplicate.inc()
                return
            received_at = datetime.now(UTC)
            message = Message(
                topic=topic,
                payload=payload,
                received_at=received_at,
                retain=bool(msg.retain),
                dup=bool(msg.dup),
                content_type=content_type,
                user_properties=tuple(user_props or ()),
                receipt_id=new_event_id(received_at, random_bytes(10)),
                response_topic=response_topic if isinstance(response_topic, str) else None,
                correlation_data=bytes(correlation) if correlation is not None else None,
                message_expiry=expiry if isinstance(expiry, int) else None,
                packet_id=msg.mid if msg.qos > 0 else 0,
                connection=self._connection_id,
            )
            self._pending.append(Received(message, msg.mid, msg.qos, self._connection))
            self._arrived.set()
            if len(self._pending) >= self._max_batch:
                self._full.set()
        except Exception:
            log.exception("could not take a message off the wire", mid=msg.mid)

    def _is_unacked_copy(self, mid: int, topic: str, payload: bytes, *, dup: bool) -> bool:
        """Whether this PUBLISH repeats one received on this connection and not yet
        acknowledged (same packet identifier and content); else remember it."""
        held = self._unacked.get(mid)
        if dup and held is not None and held == (topic, payload):
            return True
        self._unacked[mid] = (topic, payload)
        return False

    def _on_subscribe(
        self,
        _c: paho.Client,
        _u: Any,
        _mid: int,
        reasons: list[ReasonCode],
        _p: Properties | None,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if _mid == self._watch_mid:
            if refused:  # not every broker publishes $SYS to every client: stay silent
                log.debug("the broker does not let us watch", topics=list(self._watch))
            return
        if refused:
            log.error("broker refused subscriptions", filters=self._filters, reasons=refused)
        self._subscribed.set()

    def _on_publish(
        self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Properties
    ) -> None:
        future = self._publishes.get(mid)
        if future is None or future.done():
            if reason.is_failure:  # our own status message: nobody waits, so say it
                log.warning("broker refused a publish", reason=str(reason), code=reason.value)
            return
        # MQTT 5: a PUBACK with a reason code of 0x80 or more (not authorized,
        # quota exceeded, ...) means the broker did not take the message.
        if reason.is_failure:
            future.set_exception(
                BrokerError(f"the broker refused the publish: {reason} (0x{reason.value:02x})")
            )
        else:
            future.set_result(None)

    # -- tasks -------------------------------------------------------------------

    async def _connection_keeper(self) -> None:
        delay = 0.5  # doubles with each failed try (up to mqtt.reconnect_max)
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if self._connected.is_set():
                delay = 0.5
            if self._refused is not None:
                # A broker that refuses the CONNECT (credentials, a banned client id,
                # a server busy) is asked again with backoff, never at a fixed pace.
                log.error(
                    "broker refused the connection",
                    url=self._settings.url,
                    reason=self._refused,
                    retry_in=delay,
                )
                self._refused = None
                await self._sleep_unless_stopping(delay * (0.8 + 0.4 * random.random()))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, self._settings.reconnect_max)
                continue
            if not self._client.is_connected() and self._client.socket() is None:
                try:
                    await loop.run_in_executor(None, connect, self._client, self._settings)
                except (OSError, ssl.SSLError, BrokerError) as exc:
                    log.warning(
                        "cannot reach broker",
                        url=self._settings.url,
                        error=str(exc),
                        retry_in=delay,
                    )
                    await self._sleep_unless_stopping(delay * (0.8 + 0.4 * random.random()))  # noqa: S311 - jitter, not crypto
                    delay = min(delay * 2, self._settings.reconnect_max)
                    continue
            rc = self._client.loop_misc()
            if rc == MQTTErrorCode.MQTT_ERR_NO_CONN and self._client.socket() is not None:
                self._client.loop_read()
            await self._sleep_unless_stopping(0.5)
        await self._leave()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), seconds)

    async def _leave(self) -> None:
        with contextlib.suppress(Exception):
            if self._client.is_connected():
                info = self._client.publish(
                    status_topic(self._settings.client_id), b"offline", qos=1, retain=True
                )
                for _ in range(50):
                    if info.is_published() or not self._client.is_connected():
                        break
                    await asyncio.sleep(0.01)
            self._client.disconnect()
        self._connected.clear()
        self._metrics.broker_connected.set(0)

    async def _batcher(self) -> None:
        arrivals = ArrivalRate()
        while True:
            await self._arrived.wait()
            if not self._pending:
                self._arrived.clear()
                if self._stopping:
                    return
                continue
            rate = arrivals.rate
            limit = gather_time(rate, self._commit_interval)
            if len(self._pending) < self._max_batch and limit > 0:
                await gather(
                    lambda: len(self._pending),
                    limit=limit,
                    full=self._max_batch,
                    stopping=lambda: self._stopping,
                    gap=min(limit, quiet_gap(rate)),
                )
            batch, self._pending = self._pending, []
            self._driver.resume()
            arrivals.note(len(batch), time.monotonic())
            self._metrics.messages_received.inc(len(batch))  # once a batch, not a message
            self._arrived.clear()
            self._full.clear()
            await self._commit_with_backoff(batch)
            if self._stopping and not self._pending:
                return

    async def _commit_with_backoff(self, batch: list[Received]) -> None:
        delay = 0.1
        messages = [r.message for r in batch]
        while True:  # until the store takes the batch, or we are asked to stop
            try:
                await self._commit(messages)
            except Exception as exc:
                # StoreUnavailable, or what the commit step could not isolate: either
                # way nothing is acknowledged, and ingest goes on trying; it never stops.
                if not self.store_blocked:
                    if isinstance(exc, StoreUnavailable):
                        log.error(
                            "store refuses writes; not acknowledging messages", error=str(exc)
                        )
                    else:
                        log.exception("committing a batch failed; not acknowledging messages")
                self.store_blocked = True
                self.store_error = str(exc)
                if self._stopping:
                    return  # unacked: the broker keeps them for our next start
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self.store_blocked:
                log.info("store is writable again; acknowledging")
            self.store_blocked = False
            self.store_error = None
            break
        current = self._connection
        for received in batch:
            if received.qos > 0 and received.connection == current:
                self._client.ack(received.mid, received.qos)
                self._unacked.pop(received.mid, None)
