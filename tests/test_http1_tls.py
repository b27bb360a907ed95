"""The lean HTTP/1.1 client over TLS: client certificates, SNI, fallback across addresses."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.support.raw_http import Serve, replies, send, subscription


@dataclass(frozen=True)
class Pki:
    server: ssl.SSLContext
    ca: Path
    client_cert: Path
    client_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    authority.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    client = authority.issue_cert("hookbridge-client")
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    authority.cert_pem.write_to_path(str(ca))
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    return Pki(server, ca, cert, key)


async def test_https_with_a_client_certificate(
    raw_server: Serve, sender_for: Any, pki: Pki
) -> None:
    server = await raw_server(replies(), pki.server)
    with_cert = subscription(
        server.url,
        ca_file=str(pki.ca),
        client_cert=str(pki.client_cert),
        client_key=str(pki.client_key),
    )
    without = subscription(server.url, ca_file=str(pki.ca)).model_copy(update={"name": "bare"})
    sender = await sender_for(with_cert, without)
    for attempt in (1, 2):
        assert (await send(sender, with_cert, attempt)).outcome == "delivered"
    refused = await send(sender, without)
    assert refused.outcome == "failed"
    assert refused.error is not None
    assert "TLS" in refused.error or "closed the connection" in refused.error
    assert len(server.requests) == 2
    # The good attempts shared one connection; the refused handshake never got to HTTP.
    assert server.connections == 1


async def test_https_by_name_sends_the_name_as_sni(
    raw_server: Serve, sender_for: Any, tmp_path: Path
) -> None:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    names: list[str | None] = []

    def record(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record
    server = await raw_server(replies(), context)
    ca = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca))
    # localhost may resolve to ::1 first, where nothing listens: the next address is tried.
    sub = subscription(server.url.replace("127.0.0.1", "localhost"), ca_file=str(ca))
    result = await send(await sender_for(sub), sub)
    assert result.outcome == "delivered", result.error
    assert names == ["localhost"]
