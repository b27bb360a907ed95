"""A receiver closing a kept-alive connection as a request goes out: the request goes once more.

The raw servers (:mod:`tests.support.raw_http`) close a connection exactly
when a test says: after the first answer, as the second request arrives.
"""

from __future__ import annotations

import aiohttp
import pytest

from bridge.config import Settings
from bridge.delivery.pool import Pool
from bridge.delivery.send import Sender
from bridge.errors import HttpFailure
from tests.support.raw_http import NO_CONTENT_REPLY, Reply, Serve, replies, send, subscription


def _counted_pool(url: str) -> tuple[Pool, list[int]]:
    resends: list[int] = []
    pool = Pool(
        url,
        tls=False,
        resolver=aiohttp.DefaultResolver(),
        guarded=False,
        limit=1,
        on_resend=lambda: resends.append(1),
    )
    return pool, resends


async def test_a_request_lost_by_a_reused_connection_is_sent_once_more(
    raw_server: Serve,
) -> None:
    # The receiver closes the kept-alive connection as the second request arrives.
    server = await raw_server(replies(NO_CONTENT_REPLY, Reply(b"", close=True)))
    pool, resends = _counted_pool(server.url)
    try:
        first = await pool.post(b'{"n": 1}', {"webhook-id": "msg_1"}, 0)
        second = await pool.post(b'{"n": 2}', {"webhook-id": "msg_2"}, 0)
    finally:
        await pool.close()
    assert (first.status, second.status) == (204, 204)
    assert resends == [1]
    assert server.connections == 2
    # The same bytes went twice: the receiver can tell the copy by its webhook-id.
    assert len(server.requests) == 3
    assert server.requests[1] == server.requests[2]
    assert b"webhook-id: msg_2" in server.requests[2][0]


@pytest.mark.parametrize(
    ("script", "sent"),
    [
        ((Reply(b"", close=True),), 1),  # a new connection: that is the receiver's answer
        ((NO_CONTENT_REPLY, Reply(b"HTTP/1.1 200 OK\r\nContent-Le", close=True)), 2),
    ],
    ids=["new connection", "part of an answer came"],
)
async def test_a_lost_request_is_not_sent_again_otherwise(
    raw_server: Serve, script: tuple[Reply, ...], sent: int
) -> None:
    server = await raw_server(replies(*script))
    pool, resends = _counted_pool(server.url)
    try:
        for _ in range(sent - 1):
            await pool.post(b"{}", {}, 0)
        with pytest.raises(HttpFailure, match="closed the connection without a response"):
            await pool.post(b"{}", {}, 0)
    finally:
        await pool.close()
    assert resends == []
    assert len(server.requests) == sent


async def test_a_resent_request_is_one_delivered_attempt_told_by_subscription(
    raw_server: Serve,
) -> None:
    server = await raw_server(replies(NO_CONTENT_REPLY, Reply(b"", close=True)))
    sub = subscription(server.url)
    settings = Settings.model_validate(
        {"subscriptions": [sub.model_dump()], "security": {"allow_private_targets": True}}
    )
    resent: list[str] = []
    sender = Sender(settings, user_agent="hookbridge/test", on_resend=resent.append)
    await sender.start()
    try:
        results = [await send(sender, sub, n) for n in (1, 2)]
    finally:
        await sender.close()
    assert [(r.outcome, r.status_code) for r in results] == [("delivered", 204)] * 2
    assert resent == ["crm"]
