"""The HTTP sender against real aiohttp receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from standardwebhooks import Webhook
from structlog.testing import capture_logs

from bridge.config import Settings, Subscription
from bridge.core.events import Event
from bridge.core.formats import FORMATS, encode_json
from bridge.core.signing import verify_hub_signature
from bridge.delivery.send import PIPE_BODY_LIMIT, AttemptResult, Sender, default_user_agent
from bridge.delivery.targets import target_refusal

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="
TOKEN = "Bearer tok-very-private-4711"
USER_AGENT = "hookbridge/9.9.9"
WAIT = 5.0  # the longest any receiver holds a request; a bound, never a pause

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    """A real HTTP server that records what it receives."""

    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    peers: set[Any] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


Serve = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[tuple[web.AppRunner, Receiver]] = []

    async def start(
        respond: Callable[[Receiver, web.Request], Awaitable[web.StreamResponse]] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> Receiver:
        receiver = Receiver(url="")

        async def handle(request: web.Request) -> web.StreamResponse:
            receiver.peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
            receiver.requests.append((dict(request.headers), await request.read()))
            receiver.arrived.set()
            if respond is None:
                return web.Response(status=204)
            return await respond(receiver, request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        port = runner.addresses[0][1]
        receiver.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/hook"
        runners.append((runner, receiver))
        return receiver

    yield start
    for runner, receiver in runners:
        receiver.release.set()
        await runner.cleanup()


async def _hold(receiver: Receiver, request: web.Request) -> web.StreamResponse:
    """Answer only when the test releases the receiver (bounded by WAIT)."""
    try:
        await asyncio.wait_for(receiver.release.wait(), WAIT)
    except TimeoutError:
        return web.Response(status=504)
    return web.Response(status=200)


def _subscription(url: str, **extra: Any) -> Subscription:
    return Subscription.model_validate({"name": "crm", "url": url, **extra})


def _settings(*subscriptions: Subscription, private: bool = True, kept: int = 2048) -> Settings:
    return Settings.model_validate(
        {
            "subscriptions": [s.model_dump() for s in subscriptions],
            "security": {"allow_private_targets": private},
            "limits": {"response_body_kept": kept},
        }
    )


@pytest.fixture
async def open_sender() -> AsyncIterator[Callable[[Settings], Awaitable[Sender]]]:
    senders: list[Sender] = []

    async def make(settings: Settings) -> Sender:
        sender = Sender(settings, user_agent=USER_AGENT)
        await sender.start()
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.close()


EVENT = Event(
    id="evt_send1",
    type="device.online",
    timestamp=datetime(2026, 11, 22, 4, 36, 14, 553000, tzinfo=UTC),
    source="mqtt://broker/devices/dev-1/status",
    data={"device_id": "dev-1", "seq": 3},
)


async def _send(sender: Sender, subscription: Subscription, attempt: int = 1) -> AttemptResult:
    return await sender.attempt(subscription, EVENT, delivery_id="dlv_1", attempt=attempt)


async def test_headers_and_signature_verified_by_the_reference_library(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    verified: list[Any] = []

    async def check(receiver: Receiver, request: web.Request) -> web.StreamResponse:
        # The receiving side verifies as any Standard Webhooks consumer would.
        verified.append(Webhook(SECRET).verify(await request.read(), dict(request.headers)))
        return web.json_response({"ok": True})

    receiver = await serve(check)
    sub = _subscription(
        receiver.url, secret=SECRET, headers={"Authorization": TOKEN}, hub_signature=True
    )
    sender = await open_sender(_settings(sub))
    before = int(time.time())
    result = await _send(sender, sub, attempt=3)

    assert result.outcome == "delivered"
    assert result.status_code == 200
    assert result.error is None
    assert result.content_type is not None
    assert result.content_type.startswith("application/json")
    assert verified == [EVENT.to_dict()]
    headers, body = receiver.requests[0]
    assert body == EVENT.body()
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == USER_AGENT
    assert headers["webhook-id"] == "evt_send1"
    assert before <= int(headers["webhook-timestamp"]) <= int(time.time())
    assert headers["hookbridge-delivery-id"] == "dlv_1"
    assert headers["hookbridge-attempt"] == "3"
    assert headers["Authorization"] == TOKEN
    verify_hub_signature(SECRET, headers["x-hub-signature-256"], body)


async def test_each_attempt_is_signed_with_its_own_timestamp(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    receiver = await serve()
    sub = _subscription(receiver.url, secret=SECRET)
    sender = await open_sender(_settings(sub))
    for attempt in (1, 2):
        assert (await _send(sender, sub, attempt)).outcome == "delivered"
    for headers, body in receiver.requests:
        Webhook(SECRET).verify(body, headers)
    assert [h["hookbridge-attempt"] for h, _ in receiver.requests] == ["1", "2"]
    assert len({h["webhook-id"] for h, _ in receiver.requests}) == 1


async def test_rotation_sends_one_signature_per_secret(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    receiver = await serve()
    sub = _subscription(receiver.url, secret=[SECRET, OLD_SECRET])
    sender = await open_sender(_settings(sub))
    assert (await _send(sender, sub)).outcome == "delivered"
    headers, body = receiver.requests[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(body, headers)
    Webhook(OLD_SECRET).verify(body, headers)


async def test_without_a_secret_there_is_no_signature(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    receiver = await serve()
    sub = _subscription(receiver.url, hub_signature=True)
    sender = await open_sender(_settings(sub))
    assert (await _send(sender, sub)).outcome == "delivered"
    headers, _ = receiver.requests[0]
    assert "webhook-signature" not in headers
    assert "x-hub-signature-256" not in headers
    assert headers["webhook-id"] == "evt_send1"


def _status(status: int, headers: dict[str, str] | None = None) -> Any:
    async def respond(receiver: Receiver, request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers=headers, text=f"answer {status}")

    return respond


@pytest.mark.parametrize(
    ("status", "headers", "outcome", "error", "retry_after"),
    [
        (500, None, "failed", "HTTP 500", None),
        (400, None, "failed", "HTTP 400", None),
        (408, None, "failed", "HTTP 408", None),
        (410, None, "gone", "HTTP 410 Gone", None),
        (429, {"Retry-After": "30"}, "failed", "HTTP 429", 30.0),
        (503, {"Retry-After": "garbage"}, "failed", "HTTP 503", None),
        (500, {"Retry-After": "30"}, "failed", "HTTP 500", None),  # only 429/503 carry it
        (302, {"Location": "http://127.0.0.1:9/elsewhere"}, "failed", "redirect to", None),
        (307, None, "failed", "redirect (HTTP 307) not followed", None),
    ],
)
async def test_answers_are_classified(
    serve: Serve,
    open_sender: Callable[[Settings], Awaitable[Sender]],
    status: int,
    headers: dict[str, str] | None,
    outcome: str,
    error: str,
    retry_after: float | None,
) -> None:
    receiver = await serve(_status(status, headers))
    sub = _subscription(receiver.url)
    sender = await open_sender(_settings(sub))
    result = await _send(sender, sub)
    assert result.outcome == outcome
    assert result.status_code == status
    assert result.error is not None
    assert error in result.error
    assert result.retry_after == retry_after
    assert len(receiver.requests) == 1  # a redirect is never followed
    if status != 307:
        assert result.response_excerpt == f"answer {status}"


async def test_retry_after_as_http_date(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    when = format_datetime(datetime.fromtimestamp(time.time() + 120, tz=UTC), usegmt=True)
    receiver = await serve(_status(503, {"Retry-After": when}))
    sub = _subscription(receiver.url)
    result = await _send(await open_sender(_settings(sub)), sub)
    assert result.retry_after is not None
    assert 100 <= result.retry_after <= 121


async def test_timeout_is_a_failed_attempt(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    receiver = await serve(_hold)
    sub = _subscription(receiver.url, timeout="200ms")
    sender = await open_sender(_settings(sub))
    result = await _send(sender, sub)
    # The receiver still holds the request: the attempt ended on our timeout, not its answer.
    assert not receiver.release.is_set()
    receiver.release.set()
    assert result.outcome == "failed"
    assert result.status_code is None
    assert result.error == "timeout after 200ms"


async def test_connection_refused_is_a_failed_attempt(
    open_sender: Callable[[Settings], Awaitable[Sender]],
) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sub = _subscription(f"http://127.0.0.1:{port}/hook")
    result = await _send(await open_sender(_settings(sub)), sub)
    assert result.outcome == "failed"
    assert result.error == "connection refused"
    assert result.status_code is None


async def test_connections_are_kept_alive(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    receiver = await serve(_status(200))
    sub = _subscription(receiver.url, secret=SECRET)
    sender = await open_sender(_settings(sub))
    for attempt in range(1, 21):
        assert (await _send(sender, sub, attempt)).outcome == "delivered"
    assert len(receiver.requests) == 20
    assert len(receiver.peers) == 1


async def test_a_hanging_endpoint_does_not_delay_another(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    slow_receiver = await serve(_hold)
    fast_receiver = await serve()
    slow = _subscription(slow_receiver.url, max_in_flight=2, timeout="10s").model_copy(
        update={"name": "slow"}
    )
    fast = _subscription(fast_receiver.url, max_in_flight=2).model_copy(update={"name": "fast"})
    sender = await open_sender(_settings(slow, fast))
    # More slow attempts than its pool holds: the extra ones queue on *its* pool.
    hanging = [asyncio.create_task(_send(sender, slow, n)) for n in range(1, 5)]
    await asyncio.wait_for(slow_receiver.arrived.wait(), WAIT)

    fast_results = [await _send(sender, fast, n) for n in range(1, 11)]

    assert not any(task.done() for task in hanging)  # still hanging while fast ones went
    slow_receiver.release.set()
    slow_results = await asyncio.wait_for(asyncio.gather(*hanging), WAIT)
    assert [r.outcome for r in fast_results] == ["delivered"] * 10
    assert [r.outcome for r in slow_results] == ["delivered"] * 4
    assert len(slow_receiver.peers) <= 2  # max_in_flight bounds that endpoint's connections


async def test_response_excerpt_and_body_are_capped(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    big = "é" * 5000  # multibyte: a cut inside a character must not raise

    async def respond(receiver: Receiver, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/huge"):
            return web.Response(body=b"x" * (PIPE_BODY_LIMIT + 4096))
        return web.Response(text=big)

    receiver = await serve(respond)
    push = _subscription(receiver.url)
    pipe = _subscription(
        receiver.url.replace("/hook", "/huge"), mode="pipe", reply_topic="devices/x/commands"
    ).model_copy(update={"name": "piped"})
    sender = await open_sender(_settings(push, pipe, kept=101))

    pushed = await _send(sender, push)
    assert pushed.response_body is not None
    assert len(pushed.response_body) == 101
    assert pushed.response_excerpt is not None
    assert pushed.response_excerpt.startswith("é" * 50)
    assert len(pushed.response_excerpt.encode()) <= 101 + 2  # one replacement character

    piped = await _send(sender, pipe)
    assert piped.outcome == "delivered"
    assert piped.response_body is not None
    assert len(piped.response_body) == PIPE_BODY_LIMIT
    assert piped.response_excerpt == "x" * 101


async def test_secrets_stay_out_of_results_reprs_and_logs(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    ok = await serve()
    failing = await serve(_status(500))
    sub = _subscription(ok.url, secret=SECRET, headers={"Authorization": TOKEN})
    bad = _subscription(failing.url, secret=SECRET, headers={"Authorization": TOKEN}).model_copy(
        update={"name": "bad"}
    )
    closed = _subscription("http://127.0.0.1:9/hook", secret=SECRET).model_copy(
        update={"name": "closed", "verify_tls": False}
    )
    with capture_logs() as logs:
        sender = await open_sender(_settings(sub, bad, closed))
        results = [await _send(sender, s) for s in (sub, bad, closed)]
        await sender.close()
    assert [r.outcome for r in results] == ["delivered", "failed", "failed"]
    attempts = [e for e in logs if e["event"] == "delivery attempt"]
    assert len(attempts) == 3
    assert all({"event_id", "delivery_id", "subscription"} <= e.keys() for e in attempts)
    assert any(e["log_level"] == "warning" for e in logs)  # TLS verification off
    texts = [repr(results), repr(logs), repr(sub), repr(sender), str(sub)]
    for text in texts:
        for secret in (SECRET, SECRET.removeprefix("whsec_"), TOKEN, "tok-very-private"):
            assert secret not in text


async def test_refused_targets_never_see_traffic(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    receiver = await serve()
    port = receiver.url.split(":")[2].split("/")[0]
    urls = {
        "v4": f"http://127.0.0.1:{port}/hook",
        "v6": f"http://[::1]:{port}/hook",
        "lan": "http://10.0.0.1/hook",
        "name": f"http://localhost:{port}/hook",  # refused by the resolver, after lookup
    }
    subs = [_subscription(url).model_copy(update={"name": n}) for n, url in urls.items()]
    sender = await open_sender(_settings(*subs, private=False))
    results = {s.name: await _send(sender, s) for s in subs}
    assert receiver.requests == []
    for name, result in results.items():
        assert result.outcome == "failed", name
        assert result.error is not None
        assert "set security.allow_private_targets: true to allow it" in result.error, name
    assert results["v4"].error == (
        "target 127.0.0.1 is a loopback address; "
        "set security.allow_private_targets: true to allow it"
    )
    assert "::1 is a loopback" in (results["v6"].error or "")
    assert "10.0.0.1 is a private" in (results["lan"].error or "")
    assert "is a loopback" in (results["name"].error or "")


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("::ffff:10.1.2.3", "private"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("192.168.1.10", "private"),
        ("100.64.0.1", "non-public"),
        ("nonsense", "not an IP address"),
    ],
)
def test_guard_categories(address: str, category: str) -> None:
    assert category in (target_refusal(address) or "")


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111"])
def test_public_addresses_pass_the_guard(address: str) -> None:
    assert target_refusal(address) is None


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    return server, ca_file


async def test_tls_verification(
    serve: Serve,
    open_sender: Callable[[Settings], Awaitable[Sender]],
    tls_files: tuple[ssl.SSLContext, Path],
) -> None:
    server_context, ca_file = tls_files
    receiver = await serve(tls=server_context)
    trusted = _subscription(receiver.url, ca_file=str(ca_file))
    untrusted = _subscription(receiver.url).model_copy(update={"name": "untrusted"})
    insecure = _subscription(receiver.url, verify_tls=False).model_copy(update={"name": "lax"})
    missing_ca = _subscription(receiver.url, ca_file=str(ca_file.with_name("none.pem")))
    missing_ca = missing_ca.model_copy(update={"name": "missing"})
    with capture_logs() as logs:
        sender = await open_sender(_settings(trusted, untrusted, insecure, missing_ca))
        assert (await _send(sender, trusted)).outcome == "delivered"
        refused = await _send(sender, untrusted)
        assert (await _send(sender, insecure)).outcome == "delivered"
        assert (await _send(sender, insecure)).outcome == "delivered"
        broken = await _send(sender, missing_ca)
    assert refused.outcome == "failed"
    assert refused.error is not None
    assert refused.error.startswith("TLS verification failed")
    assert broken.outcome == "failed"
    assert "ca_file of subscription missing cannot be loaded" in (broken.error or "")
    warnings = [e for e in logs if e["log_level"] == "warning" and e.get("subscription") == "lax"]
    assert len(warnings) == 1
    assert len(receiver.requests) == 3


async def test_reconfigure_replaces_changed_pools(
    serve: Serve, open_sender: Callable[[Settings], Awaitable[Sender]]
) -> None:
    receiver = await serve()
    first = _subscription(receiver.url, headers={"x-version": "1"})
    sender = await open_sender(_settings(first))
    assert (await _send(sender, first)).outcome == "delivered"
    assert (await _send(sender, first)).outcome == "delivered"
    second = _subscription(receiver.url, headers={"x-version": "2"})
    sender.reconfigure([second])
    assert (await _send(sender, second)).outcome == "delivered"
    assert [h["x-version"] for h, _ in receiver.requests] == ["1", "1", "2"]
    assert len(receiver.peers) == 2  # the changed subscription got a fresh pool
    sender.reconfigure([])
    # A subscription no longer configured can still be tried (a delivery in flight
    # during a reload); it gets a pool of its own again.
    assert (await _send(sender, second)).outcome == "delivered"


async def test_unavailable_format_and_closed_sender_are_failed_attempts(
    serve: Serve,
    open_sender: Callable[[Settings], Awaitable[Sender]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = await serve()
    # A format a plugin provided when the configuration was read, gone since.
    monkeypatch.setitem(FORMATS, "vanishing", encode_json)
    gone = _subscription(receiver.url, format="vanishing")
    sender = await open_sender(_settings(gone))
    monkeypatch.delitem(FORMATS, "vanishing")
    result = await _send(sender, gone)
    assert result.outcome == "failed"
    assert result.error == "format 'vanishing' is not available"
    await sender.close()
    after = await _send(sender, _subscription(receiver.url))
    assert after.error == "the sender is closed"
    assert receiver.requests == []


def test_default_user_agent_names_the_package() -> None:
    assert default_user_agent().startswith("hookbridge/")
