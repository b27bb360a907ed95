"""The HTTP sender: one signed POST of one event to one subscription, classified.

:class:`Sender` owns the HTTP client side of the bridge. Each subscription
gets its own endpoint (:mod:`bridge.delivery.endpoints`) with a pool of at most
``max_in_flight`` connections, so a slow or dead endpoint can exhaust only its
own pool, never another subscription's. Connections are kept alive between
attempts. Webhook POSTs go through the lean HTTP/1.1 client
(:mod:`bridge.delivery.http1`, :mod:`bridge.delivery.pool`); a subscription
with a ``proxy`` and OAuth2 token requests go through aiohttp.

An attempt never raises for a network or HTTP problem: every outcome,
including a refused target, a timeout or a TLS failure, is an
:class:`AttemptResult` that :func:`bridge.retry.decide` turns into the
delivery's next state. Redirects are not followed, proxies from the
environment are not used (a proxy would bypass the target check), and the
address actually connected to is checked by a resolver that refuses
loopback, private, link-local, multicast and reserved addresses unless
``security.allow_private_targets`` is set.

Header values of a subscription are secrets: they are sent, never logged.
Receiver authentication (bearer, basic, OAuth2 client credentials) comes from
:mod:`bridge.auth`; an OAuth2 receiver answering 401 gets one retry with a
fresh token. ``client_cert``/``client_key`` give mutual TLS and ``proxy`` an
explicit HTTP proxy, both per subscription. Through a proxy the target guard
judges the target (resolved here), not the proxy, which is trusted as a
proxy because the configuration names it (:mod:`bridge.targets`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version

import aiohttp
import structlog

from bridge.config import Settings, Subscription
from bridge.core.batching import Batch
from bridge.core.events import Event
from bridge.core.formats import Encoded, encoder_for
from bridge.core.outcomes import AttemptResult
from bridge.core.signing import hub_signature, signature_header
from bridge.core.trace import format_traceparent, new_span_id, trace_of
from bridge.delivery import spans
from bridge.delivery.answers import (
    Answered,
    classify,
    describe,
    failure,
    read_capped,
    unexpected,
    warn_if_refused,
)
from bridge.delivery.endpoints import Endpoint, ssl_for
from bridge.delivery.excerpts import SCRUB_MARGIN, sent_secrets
from bridge.delivery.targets import judge_target
from bridge.errors import BridgeError, DeliveryError, HttpFailure
from bridge.observe.spans import NoSpans, Spans
from bridge.store.ids import random_bytes

__all__ = [
    "PIPE_BODY_LIMIT",
    "AttemptResult",
    "Sender",
    "default_user_agent",
]

PIPE_BODY_LIMIT = 1024 * 1024
"""The most of a response body kept for pipe mode (routed back over MQTT)."""

log = structlog.get_logger(__name__)


def default_user_agent() -> str:
    """``hookbridge/<installed version>``."""
    try:
        installed = version("hookbridge")
    except PackageNotFoundError:
        installed = "0+unknown"
    return f"hookbridge/{installed}"


class Sender:
    """Sends attempts; one isolated connection pool per subscription."""

    def __init__(
        self,
        settings: Settings,
        *,
        user_agent: str,
        spans: Spans | None = None,
        on_resend: Callable[[str], None] | None = None,
    ) -> None:
        """``on_resend`` hears the subscription's name when a request went again on a new
        connection (see :mod:`bridge.delivery.pool`)."""
        self._settings = settings
        self._on_resend = on_resend
        self._user_agent = user_agent
        self._spans: Spans = spans if spans is not None else NoSpans()
        self._subscriptions = {s.name: s for s in settings.subscriptions}
        self._endpoints: dict[str, Endpoint] = {}
        self._retired: list[Endpoint] = []
        self._warned_insecure: set[str] = set()
        self._closed = False

    async def start(self) -> None:
        """Open the pools of the configured subscriptions (connections open on first use)."""
        self._closed = False
        for subscription in self._subscriptions.values():
            if subscription.enabled:
                try:
                    self._endpoint_for(subscription)
                except DeliveryError as exc:
                    # Reported again on every attempt, where it becomes a failed attempt.
                    log.warning(
                        "subscription cannot send", subscription=subscription.name, error=str(exc)
                    )

    async def close(self) -> None:
        """Close every session, retired ones included."""
        self._closed = True
        endpoints = [*self._endpoints.values(), *self._retired]
        self._endpoints.clear()
        self._retired.clear()
        for endpoint in endpoints:
            await endpoint.close()

    def reconfigure(
        self, subscriptions: Sequence[Subscription], *, settings: Settings | None = None
    ) -> None:
        """Adopt a reloaded configuration.

        Pools of removed or changed subscriptions are retired and closed once
        their in-flight attempts finish; new ones open on first use. With
        ``settings``, limits and security are adopted too; a changed target
        guard retires every pool (each pool's resolver enforces it).
        """
        if settings is not None:
            if settings.security != self._settings.security:
                self._retired.extend(self._endpoints.values())
                self._endpoints.clear()
            self._settings = settings
        wanted = {s.name: s for s in subscriptions}
        for name, endpoint in list(self._endpoints.items()):
            if wanted.get(name) != endpoint.subscription:
                self._retired.append(self._endpoints.pop(name))
        self._subscriptions = wanted

    def _guarded(self, subscription: Subscription) -> bool:
        """Whether the SSRF guard judges this subscription's target."""
        return not (
            self._settings.security.allow_private_targets
            # The per-subscription switch, where the configuration has it.
            or getattr(subscription, "allow_private_target", False)
        )

    def _endpoint_for(self, subscription: Subscription) -> Endpoint:
        current = self._endpoints.get(subscription.name)
        if current is not None:
            if current.subscription is subscription or current.subscription == subscription:
                return current
            self._retired.append(self._endpoints.pop(subscription.name))
        tls = ssl_for(subscription)
        if tls is False and subscription.name not in self._warned_insecure:
            self._warned_insecure.add(subscription.name)
            log.warning(
                "TLS certificate verification is off for this subscription",
                subscription=subscription.name,
            )
        resent = self._on_resend
        told = None if resent is None else functools.partial(resent, subscription.name)
        endpoint = Endpoint(subscription, tls, guarded=self._guarded(subscription), on_resend=told)
        self._endpoints[subscription.name] = endpoint
        return endpoint

    async def _close_idle_retired(self) -> None:
        idle = [e for e in self._retired if e.in_flight == 0]
        if idle:
            self._retired = [e for e in self._retired if e.in_flight > 0]
            for endpoint in idle:
                await endpoint.close()

    def _headers(
        self,
        subscription: Subscription,
        event: Event,
        encoded: Encoded,
        *,
        delivery_id: str | None,
        attempt: int,
        span_id: str,
        webhook_id: str | None = None,
    ) -> dict[str, str]:
        """The attempt's headers; ``webhook_id`` (a batch's id) signs in place of the event id."""
        message_id = event.id if webhook_id is None else webhook_id
        headers = {name: value.get_secret_value() for name, value in subscription.headers.items()}
        headers.update(encoded.extra_headers)
        # The attempt's own time, signed afresh: a receiver's replay window
        # must not reject a late retry of an old event.
        timestamp = int(time.time())
        headers.update(
            {
                "content-type": encoded.content_type,
                "user-agent": self._user_agent,
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "hookbridge-attempt": str(attempt),
            }
        )
        if delivery_id is not None:
            headers["hookbridge-delivery-id"] = delivery_id
        # W3C trace context: the event's trace (the device's, or one started at
        # receipt), a new span per attempt (exported as hookbridge.attempt).
        trace = trace_of(event.id, event.context)
        headers["traceparent"] = format_traceparent(trace.trace_id, span_id, trace.flags)
        if trace.state:
            headers["tracestate"] = trace.state
        secrets = [secret.get_secret_value() for secret in subscription.secrets]
        if secrets:
            headers["webhook-signature"] = signature_header(
                secrets, message_id, timestamp, encoded.body
            )
            if subscription.hub_signature:
                headers["x-hub-signature-256"] = hub_signature(secrets[0], encoded.body)
        return headers

    async def attempt(
        self, subscription: Subscription, event: Event, *, delivery_id: str, attempt: int
    ) -> AttemptResult:
        """POST ``event`` to ``subscription`` once; every problem is a failed result."""
        wall_start = time.time()
        span_id = new_span_id(random_bytes(8))

        def build() -> tuple[Encoded, dict[str, str]]:
            encoder = encoder_for(subscription.format)
            if encoder is None:
                raise DeliveryError(f"format '{subscription.format}' is not available")
            encoded = encoder(event)
            headers = self._headers(
                subscription,
                event,
                encoded,
                delivery_id=delivery_id,
                attempt=attempt,
                span_id=span_id,
            )
            return encoded, headers

        result = await self._send(subscription, build)
        log.debug(
            "delivery attempt",
            event_id=event.id,
            delivery_id=delivery_id,
            subscription=subscription.name,
            attempt=attempt,
            outcome=result.outcome,
            status_code=result.status_code,
            latency_ms=round(result.latency_ms, 1),
            error=result.error,
        )
        if self._spans.enabled:
            spans.record_attempt(
                self._spans,
                subscription,
                event,
                result,
                delivery_id=delivery_id,
                attempt=attempt,
                span_id=span_id,
                start=wall_start,
            )
        return result

    async def attempt_batch(
        self, subscription: Subscription, batch: Batch, *, attempt: int
    ) -> AttemptResult:
        """POST one batch once, signed with the batch id; every problem is a failed result.

        The trace context is the first event's, with the batch's attempt span as
        parent (see :mod:`bridge.delivery.spans`); ``hookbridge-batch-size`` says
        how many envelopes the body holds (there is no one delivery id to name).
        """
        wall_start = time.time()
        span_id = new_span_id(random_bytes(8))

        def build() -> tuple[Encoded, dict[str, str]]:
            encoded = Encoded(batch.body, "application/json", {})
            headers = self._headers(
                subscription,
                batch.first,
                encoded,
                delivery_id=None,
                attempt=attempt,
                span_id=span_id,
                webhook_id=batch.id,
            )
            headers["hookbridge-batch-size"] = str(batch.size)
            return encoded, headers

        result = await self._send(subscription, build)
        if self._spans.enabled:
            spans.record_batch_attempt(
                self._spans,
                subscription,
                batch,
                result,
                attempt=attempt,
                span_id=span_id,
                start=wall_start,
            )
        return result

    async def _send(
        self, subscription: Subscription, build: Callable[[], tuple[Encoded, dict[str, str]]]
    ) -> AttemptResult:
        """Build the request (body, headers), check the target, POST it; never raises."""
        started = time.perf_counter()
        try:
            encoded, headers = build()
            endpoint = await self._checked_endpoint(subscription)
        except BridgeError as exc:
            warn_if_refused(subscription, exc)
            return failure(started, str(exc))
        except Exception as exc:  # a format plugin, a header the HTTP layer refuses...
            log.warning("building the request failed unexpectedly", exc_info=True)
            return unexpected(started, "building the request", exc, subscription)
        endpoint.in_flight += 1
        try:
            return await self._authorised_post(endpoint, encoded.body, headers, started)
        except Exception as exc:  # an auth provider, a value aiohttp refuses to send...
            log.warning("sending the request failed unexpectedly", exc_info=True)
            return unexpected(started, "sending the request", exc, subscription)
        finally:
            endpoint.in_flight -= 1
            await self._close_idle_retired()

    async def _checked_endpoint(self, subscription: Subscription) -> Endpoint:
        """The subscription's pool, once its target passes the guard; raises what stops it."""
        if self._closed:
            raise DeliveryError("the sender is closed")
        if self._guarded(subscription):
            await judge_target(subscription.url, proxied=subscription.proxy is not None)
        return self._endpoint_for(subscription)

    async def _authorised_post(
        self, endpoint: Endpoint, body: bytes, headers: dict[str, str], started: float
    ) -> AttemptResult:
        """POST with the receiver's auth; on a 401 with OAuth2, once more with a fresh token."""
        try:
            headers.update(await endpoint.auth.headers(endpoint.session))
        except BridgeError as exc:
            return failure(started, str(exc))
        result = await self._post(endpoint, body, headers, started)
        if result.status_code == 401 and endpoint.auth.refreshable:
            endpoint.auth.invalidate(headers)
            try:
                headers.update(await endpoint.auth.headers(endpoint.session))
            except BridgeError as exc:
                return failure(started, str(exc))
            result = await self._post(endpoint, body, headers, started)
        return result

    async def _post(
        self, endpoint: Endpoint, body: bytes, headers: Mapping[str, str], started: float
    ) -> AttemptResult:
        subscription = endpoint.subscription
        kept = self._settings.limits.response_body_kept
        cap = max(kept, PIPE_BODY_LIMIT) if subscription.mode == "pipe" else kept + SCRUB_MARGIN
        answer: Answered
        try:
            if endpoint.pool is not None:
                # The whole attempt. wait_for, not asyncio.timeout: on Python 3.11 a
                # timer that fires in the loop turn the answer completes leaves a
                # cancel pending on this task, which its next await would raise.
                pooled = await asyncio.wait_for(
                    endpoint.pool.post(body, headers, cap), subscription.timeout
                )
                answer, content = pooled, pooled.body
            else:
                async with endpoint.session.post(
                    subscription.url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    proxy=subscription.proxy,  # explicit per subscription; never from the env
                ) as response:
                    content = await read_capped(response.content, cap)
                    answer = response
        except BridgeError as exc:  # TargetRefused from the resolver
            warn_if_refused(subscription, exc)
            return failure(started, str(exc))
        except (aiohttp.ClientError, OSError, HttpFailure) as exc:  # TimeoutError is an OSError
            return failure(started, describe(exc, subscription))
        result = classify(answer, content, kept, started, sent_secrets(subscription, headers))
        if subscription.mode == "pipe":
            return result
        # The margin read only served the masking.
        return dataclasses.replace(result, response_body=content[:kept])
