"""Standard Webhooks signing, cross-checked against the reference library both ways."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bridge.cli.keys import generate_secret
from bridge.core.signing import (
    hub_signature,
    secret_key,
    sign,
    signature_header,
    verify,
    verify_hub_signature,
)
from bridge.errors import SignatureError

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = b'{"id":"evt_1","type":"device.online","data":{"device_id":"dev-1"}}'
NOW = 1_700_000_000


def _headers(signature: str, timestamp: int = NOW, msg_id: str = "evt_1") -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_sign_matches_the_specified_hmac() -> None:
    expected = hmac.new(b"k" * 32, b"evt_1.1700000000." + BODY, hashlib.sha256).digest()
    assert sign(SECRET, "evt_1", NOW, BODY) == "v1," + base64.b64encode(expected).decode()


def test_our_signature_verifies_with_the_reference_library() -> None:
    now = int(time.time())
    headers = _headers(sign(SECRET, "evt_1", now, BODY), now)
    assert Webhook(SECRET).verify(BODY, headers)["id"] == "evt_1"


def test_reference_signature_verifies_with_ours() -> None:
    signature = Webhook(SECRET).sign("evt_1", datetime.fromtimestamp(NOW, tz=UTC), BODY.decode())
    verify([SECRET], _headers(signature), BODY, now=NOW)


def test_reference_library_rejects_a_tampered_body_we_signed() -> None:
    now = int(time.time())
    headers = _headers(sign(SECRET, "evt_1", now, BODY), now)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY + b" ", headers)


def test_unpadded_whsec_secret_is_accepted() -> None:
    unpadded = "whsec_" + base64.b64encode(b"x" * 31).decode().rstrip("=")
    assert secret_key(unpadded) == b"x" * 31


def test_secret_without_prefix_uses_its_raw_bytes() -> None:
    expected = hmac.new(b"plain-shared-secret", b"m.1." + BODY, hashlib.sha256).digest()
    assert sign("plain-shared-secret", "m", 1, BODY) == "v1," + base64.b64encode(expected).decode()


@pytest.mark.parametrize("bad", ["whsec_!!!not-base64", "whsec_", ""])
def test_malformed_secret_is_a_signature_error_without_the_value(bad: str) -> None:
    with pytest.raises(SignatureError) as caught:
        sign(bad, "evt_1", NOW, BODY)
    if bad.removeprefix("whsec_"):
        assert bad.removeprefix("whsec_") not in str(caught.value)


def test_rotation_either_secret_verifies() -> None:
    header = signature_header([OTHER, SECRET], "evt_1", NOW, BODY)
    assert len(header.split(" ")) == 2
    verify([SECRET], _headers(header), BODY, now=NOW)
    verify([OTHER], _headers(header), BODY, now=NOW)
    # And the receiver side during its own rotation: it holds both, we sent one.
    verify([OTHER, SECRET], _headers(sign(SECRET, "evt_1", NOW, BODY)), BODY, now=NOW)
    # The reference library accepts a rotation header too.
    now = int(time.time())
    rotated = _headers(signature_header([OTHER, SECRET], "evt_1", now, BODY), now)
    assert Webhook(SECRET).verify(BODY, rotated)["type"] == "device.online"


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([OTHER], _headers(sign(SECRET, "evt_1", NOW, BODY)), BODY, now=NOW)


def test_tampered_body_or_id_is_refused() -> None:
    header = sign(SECRET, "evt_1", NOW, BODY)
    with pytest.raises(SignatureError):
        verify([SECRET], _headers(header), BODY + b"x", now=NOW)
    with pytest.raises(SignatureError):
        verify([SECRET], _headers(header, msg_id="evt_2"), BODY, now=NOW)


@pytest.mark.parametrize(("timestamp", "message"), [(NOW - 301, "too old"), (NOW + 301, "future")])
def test_timestamp_outside_tolerance_is_refused(timestamp: int, message: str) -> None:
    header = sign(SECRET, "evt_1", timestamp, BODY)
    with pytest.raises(SignatureError, match=message):
        verify([SECRET], _headers(header, timestamp), BODY, now=NOW)
    verify([SECRET], _headers(header, timestamp), BODY, now=NOW, tolerance=302)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "evt_1", "webhook-timestamp": str(NOW)},
        {"webhook-id": "evt_1", "webhook-timestamp": "1.5e9", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "evt_1", "webhook-timestamp": "-5", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "evt_1", "webhook-timestamp": str(NOW), "webhook-signature": "v1"},
        {"webhook-id": "evt_1", "webhook-timestamp": str(NOW), "webhook-signature": "v1,@@@"},
        {"webhook-id": "evt_1", "webhook-timestamp": str(NOW), "webhook-signature": "v2,AAAA"},
        {"webhook-id": " ", "webhook-timestamp": str(NOW), "webhook-signature": "v1,AAAA"},
    ],
)
def test_malformed_headers_are_signature_errors(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        verify([SECRET], headers, BODY, now=NOW)


def test_header_names_are_case_insensitive() -> None:
    header = sign(SECRET, "evt_1", NOW, BODY)
    verify(
        [SECRET],
        {"Webhook-Id": "evt_1", "WEBHOOK-TIMESTAMP": str(NOW), "Webhook-Signature": header},
        BODY,
        now=NOW,
    )


_header_text = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"\A(v1,[A-Za-z0-9+/=]{0,60} ?){0,3}\Z"),
    st.sampled_from(["v1,", ",", "v1,====", "v1,YQ", "\x00", "v1,\udcff"]),
)


@given(
    msg_id=_header_text,
    timestamp=st.one_of(st.integers().map(str), _header_text),
    signature=_header_text,
    body=st.binary(max_size=64),
)
def test_garbage_headers_only_ever_raise_signature_error(
    msg_id: str, timestamp: str, signature: str, body: bytes
) -> None:
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    with pytest.raises(SignatureError):
        verify([SECRET, "raw-secret"], headers, body, now=NOW)


@given(msg_id=st.text(min_size=1, max_size=40).filter(str.strip), body=st.binary(max_size=200))
def test_sign_then_verify_round_trips(msg_id: str, body: bytes) -> None:
    verify([SECRET], _headers(sign(SECRET, msg_id, NOW, body), msg_id=msg_id), body, now=NOW)


def test_hub_signature_is_github_style() -> None:
    expected = hmac.new(b"gh-secret-1", BODY, hashlib.sha256).hexdigest()
    assert hub_signature("gh-secret-1", BODY) == f"sha256={expected}"
    verify_hub_signature("gh-secret-1", f"sha256={expected.upper()}", BODY)


@pytest.mark.parametrize(
    "header", [None, "", "sha1=abc", "sha256=zz", "sha256=" + "0" * 64, "sha256=" + "a" * 63]
)
def test_hub_signature_refuses_bad_headers(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_hub_signature("gh-secret-1", header, BODY)


def test_generated_secrets_are_32_random_bytes_usable_by_the_reference() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(secret_key(first)) == 32
    now = int(time.time())
    Webhook(first).verify(BODY, _headers(sign(first, "evt_1", now, BODY), now))
