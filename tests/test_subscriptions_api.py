"""Subscriptions made, read, changed and deleted through the admin API, beside the file's.

A running bridge (SQLite, a private mosquitto, real receivers): what the API
makes is delivered to and signed with the secret it answered once; ``PATCH``
needs the ETag it read; a delete ends pending deliveries dead and sends nothing
after; a rotated secret signs beside the new one for the grace; the draft test
shows a receiver's answer and stores nothing; bad input is refused with its
place and leaves nothing behind.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from bridge.observe.logs import scrub_secrets
from tests.conftest import SECRET, crm_subscription, running_bridge
from tests.support.accounts import accounts_config, new_account, subscribe
from tests.support.admin import Admin, admin_client
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver, receiving
from tests.support.waiting import wait_until

RAW_SECRET = "a-shared-secret-of-the-receiver"


def _event(device: str, n: int, kind: str = "session.started") -> tuple[str, dict[str, Any]]:
    return (f"devices/{device}/events", {"type": kind, "id": f"m-{device}-{n}"})


async def _counts(admin: Admin) -> dict[str, int]:
    status, stats = await admin.get("/api/stats")
    assert status == 200
    counts: dict[str, int] = stats["counts"]
    return counts


async def test_an_api_subscription_runs_beside_the_files_and_never_shows_its_secret(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    async with receiving() as other:
        config = accounts_config(mosquitto, tmp_path, [crm_subscription(other)])
        async with running_bridge(config), admin_client(config) as admin:
            made = await subscribe(admin, "tickets", receiver.url, events=["session.*"])
            assert made["source"] == "api" and made["account"] is None
            secret = made["secret"]
            assert secret.startswith("whsec_") and made["warnings"] == []
            assert made["etag"] == '"r1"'
            with Publisher(mosquitto.port) as device:
                device.publish_all([_event("d1", 1), _event("d1", 2, "device.added")])
            await wait_until(lambda: len(receiver.requests) == 1, message="session delivered")
            await wait_until(lambda: len(other.requests) == 2, message="both to the file's")
            request = receiver.requests[0]
            assert (
                Webhook(secret).verify(request.body, request.headers)["type"] == "session.started"
            )

            status, listed = await admin.get("/api/subscriptions")
            assert status == 200
            by_name = {s["name"]: s for s in listed["subscriptions"]}
            assert by_name["crm"]["source"] == "config" and by_name["crm"]["etag"] is None
            assert by_name["tickets"]["source"] == "api"
            status, one = await admin.get("/api/subscriptions/tickets")
            assert status == 200 and one["secret"] == "set"
            assert one["secret_hint"] == f"whsec_…{secret[-4:]}"
            for answer in (listed, one):  # never again after the answer that made it
                assert secret not in str(answer)
                assert secret[len("whsec_") :] not in str(answer)
            # Never logged either: the scrubber knows it from the moment it was made.
            assert scrub_secrets(f"x {secret} y") == "x ********** y"

            # A raw (not whsec_) secret is taken as in a file, with the file's warning.
            raw = await subscribe(admin, "raw", receiver.url, secret=RAW_SECRET)
            assert raw["secret"] == RAW_SECRET
            assert [w.split(":")[0] for w in raw["warnings"]] == ["secret"]


async def test_patch_needs_the_etag_it_read_and_changes_apply_at_once(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = accounts_config(mosquitto, tmp_path)
    async with running_bridge(config), admin_client(config) as admin:
        await subscribe(admin, "ops", receiver.url, events=["session.*"])
        path = "/api/subscriptions/ops"
        status, body = await admin.call("PATCH", path, json={"events": ["device.*"]})
        assert status == 428 and "If-Match" in body["error"]
        headers = {"If-Match": '"r7"'}
        status, body = await _patch(admin, path, {"events": ["device.*"]}, headers)
        assert status == 412 and "changed since it was read" in body["error"]
        status, body = await _patch(admin, path, {"events": ["device.*"]}, {"If-Match": '"r1"'})
        assert status == 200, body
        assert body["events"] == ["device.*"] and body["etag"] == '"r2"'
        # The first editor's ETag is stale now: a second change with it is refused.
        status, body = await _patch(admin, path, {"events": ["*"]}, {"If-Match": '"r1"'})
        assert status == 412
        with Publisher(mosquitto.port) as device:
            device.publish_all([_event("d1", 1), _event("d1", 2, "device.added")])
        await wait_until(lambda: len(receiver.requests) == 1)
        assert receiver.events()[0]["type"] == "device.added"
        # A merge patch: null goes back to the default (every event).
        status, body = await _patch(admin, path, {"events": None}, {"If-Match": "*"})
        assert status == 200 and body["events"] == ["*"]
        status, body = await _patch(admin, path, {"name": "other"}, {"If-Match": "*"})
        assert status == 400 and body["error"].startswith("name:")
        status, audit = await admin.get("/api/audit")
        changed = [e for e in audit["entries"] if e["action"] == "subscription.updated"]
        assert changed[-1]["changes"]["events"] == {"from": ["session.*"], "to": ["device.*"]}


async def _patch(
    admin: Admin, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, Any]:
    async with admin.session.patch(
        admin.base + path, json=body, headers={"Authorization": f"Bearer {admin.token}", **headers}
    ) as response:
        return response.status, await response.json()


async def test_the_files_subscriptions_are_read_only_and_names_are_unique(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = accounts_config(mosquitto, tmp_path, [crm_subscription(receiver)])
    async with running_bridge(config), admin_client(config) as admin:
        for method, path in (
            ("PATCH", "/api/subscriptions/crm"),
            ("DELETE", "/api/subscriptions/crm"),
            ("POST", "/api/subscriptions/crm/rotate-secret"),
        ):
            status, body = await admin.call(method, path, json={})
            assert status == 409 and "read-only" in body["error"], (method, body)
        token = await new_account(admin, "acme")
        for name, who in (("crm", None), ("crm", token)):
            status, body = await admin.post(
                "/api/subscriptions", json={"name": name, "url": receiver.url}, token=who
            )
            assert (status, body["error"]) == (409, "name taken")
        await subscribe(admin, "mine", receiver.url, token=token)
        status, body = await admin.post(
            "/api/subscriptions", json={"name": "mine", "url": receiver.url}
        )
        assert (status, body["error"]) == (409, "name taken")  # whose, it does not say
        # A deleted name stays reserved while its deliveries may be kept.
        assert (await admin.call("DELETE", "/api/subscriptions/mine", token=token))[0] == 204
        status, body = await admin.post(
            "/api/subscriptions", json={"name": "mine", "url": receiver.url}, token=token
        )
        assert (status, body["error"]) == (409, "name taken")


async def test_a_delete_ends_pending_deliveries_dead_and_nothing_is_sent_after(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with receiving(lambda _r, _n: Answer(500)) as failing:
        config = accounts_config(mosquitto, tmp_path, retry={"schedule": ["1h"]})
        async with running_bridge(config) as bridge, admin_client(config) as admin:
            await subscribe(admin, "doomed", failing.url)
            with Publisher(mosquitto.port) as device:
                device.publish_all([_event("d1", n) for n in range(3)])
            await wait_until(lambda: len(failing.requests) == 3, message="first attempts")

            async def waiting() -> bool:
                return await bridge.store.queue_depth("doomed") == 3

            await wait_until(waiting, message="three deliveries waiting for their retry")
            status, _ = await admin.call("DELETE", "/api/subscriptions/doomed")
            assert status == 204
            page, _ = await bridge.store.list_deliveries(
                subscription="doomed", status=None, since=None, until=None, cursor=None, limit=10
            )
            assert {(d.status.value, d.dead_reason) for d in page} == {("dead", "deleted")}
            assert "doomed" not in bridge.dispatcher.lanes
            assert (await admin.get("/api/subscriptions/doomed"))[0] == 404
            with Publisher(mosquitto.port) as device:
                device.publish_all([_event("d2", 1)])

            async def stored() -> bool:
                return (await _counts(admin))["events"] == 4

            await wait_until(stored, message="the event after the delete is stored")
            page, _ = await bridge.store.list_deliveries(
                subscription="doomed", status=None, since=None, until=None, cursor=None, limit=10
            )
            assert len(page) == 3 and len(failing.requests) == 3
            status, audit = await admin.get("/api/audit")
            assert audit["entries"][0]["action"] == "subscription.deleted"


async def test_a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = accounts_config(mosquitto, tmp_path, accounts={"secret_grace": "1500ms"})
    async with running_bridge(config) as bridge, admin_client(config) as admin:
        old = (await subscribe(admin, "rotating", receiver.url))["secret"]
        status, rotated = await admin.post("/api/subscriptions/rotating/rotate-secret", json={})
        assert status == 200, rotated
        new = rotated["secret"]
        assert new != old and rotated["signing"] == 2
        status, body = await admin.post(
            "/api/subscriptions/rotating/rotate-secret", json={"secret": "whsec_!!"}
        )
        assert status == 400 and body["error"].startswith("secret:")
        with Publisher(mosquitto.port) as device:
            device.publish_all([_event("d1", 1)])
        await wait_until(lambda: len(receiver.requests) == 1)
        first = receiver.requests[0]
        assert len(first.headers["webhook-signature"].split(" ")) == 2
        for secret in (old, new):  # a verifier with either secret accepts it
            Webhook(secret).verify(first.body, first.headers)

        # After the grace only the new secret signs (every instance re-applies the set).
        await wait_until(
            lambda: (
                bridge.managed.applied >= 3 and len(bridge.settings.subscriptions[0].secrets) == 1
            ),
            timeout=10,
            message="the grace ended",
        )
        with Publisher(mosquitto.port) as device:
            device.publish_all([_event("d1", 2)])
        await wait_until(lambda: len(receiver.requests) == 2)
        second = receiver.requests[1]
        assert " " not in second.headers["webhook-signature"]
        Webhook(new).verify(second.body, second.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(second.body, second.headers)


async def test_the_draft_test_shows_the_answer_and_stores_nothing(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    async with receiving(lambda _r, _n: Answer(418, body=b"not a teapot today")) as teapot:
        config = accounts_config(mosquitto, tmp_path, [crm_subscription(receiver)])
        async with running_bridge(config), admin_client(config) as admin:
            before = await _counts(admin)
            # The name is not checked: the file's own "crm" may be tried as a draft.
            status, answer = await admin.post(
                "/api/subscriptions/test", json={"name": "crm", "url": teapot.url, "secret": SECRET}
            )
            assert status == 200, answer
            assert answer["outcome"] == "failed" and answer["status_code"] == 418
            assert answer["response_excerpt"] == "not a teapot today"
            assert set(answer) == {
                "outcome",
                "status_code",
                "latency_ms",
                "error",
                "response_excerpt",
            }
            (sent,) = teapot.requests
            assert Webhook(SECRET).verify(sent.body, sent.headers)["type"] == "bridge.test"
            status, answer = await admin.post("/api/subscriptions/test", json={"url": receiver.url})
            assert status == 200 and answer["outcome"] == "delivered"
            assert await _counts(admin) == before  # no event, no delivery, no attempt
            status, listed = await admin.get("/api/subscriptions")
            assert [s["name"] for s in listed["subscriptions"]] == ["crm"]
            status, body = await admin.post("/api/subscriptions/test", json={"url": "ftp://x"})
            assert status == 400 and body["error"].startswith("url:")


@pytest.mark.parametrize(
    ("fields", "status", "place"),
    [
        ({"colour": "blue"}, 400, "colour"),
        ({"events": ["sesion.*"]}, 400, "events[0]"),
        ({"secret": "whsec_!!!"}, 400, "secret"),
        ({"secret": "short"}, 400, "secret"),
        ({"url": "http://10.1.2.3/hook"}, 400, "url"),
        ({"url": "http://localhost:9/hook"}, 400, "url"),
        ({"auth": {"type": "bearer"}}, 400, "auth.token"),
        ({"name": "crm"}, 409, "name taken"),
        ({"format": "yaml"}, 400, "format"),
        ({"description": "x" * 70_000}, 413, "the body is larger than 64 KB"),
    ],
)
async def test_bad_input_is_refused_with_its_place_and_nothing_is_saved(
    mosquitto: Mosquitto,
    receiver: Receiver,
    tmp_path: Path,
    fields: dict[str, Any],
    status: int,
    place: str,
) -> None:
    # The target guard is on here: private receivers are refused before they are saved.
    config = accounts_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver)],
        security={"allow_private_targets": False},
    )
    async with running_bridge(config) as bridge, admin_client(config) as admin:
        body = {"name": "new", "url": "https://93.184.216.34/in", **fields}
        answered, answer = await admin.post("/api/subscriptions", json=body)
        assert answered == status, answer
        assert answer["error"].startswith(place), answer
        assert await bridge.store.stored_subscriptions() == []
        assert (await admin.get("/api/audit"))[1]["entries"] == []
        assert [s.name for s in bridge.settings.subscriptions] == ["crm"]


async def test_an_account_may_hold_so_many_subscriptions_and_not_reach_the_host(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = accounts_config(mosquitto, tmp_path, accounts={"max_subscriptions": 2})
    async with running_bridge(config) as bridge, admin_client(config) as admin:
        token = await new_account(admin, "acme")
        for name in ("a1", "a2"):
            await subscribe(admin, name, receiver.url, token=token)
        status, body = await admin.post(
            "/api/subscriptions", json={"name": "a3", "url": receiver.url}, token=token
        )
        assert status == 409 and body["error"].startswith("accounts.max_subscriptions")
        await subscribe(admin, "operators", receiver.url)  # the operator's do not count
        for field, value in (
            ("ca_file", "/etc/ssl/certs/ca-certificates.crt"),
            ("proxy", "http://proxy.internal:3128"),
            ("filter_plugin", "example_even_seq"),
            ("mode", "pipe"),
        ):
            await admin.call("DELETE", "/api/subscriptions/a2", token=token)
            status, body = await admin.post(
                "/api/subscriptions",
                json={"name": "a4", "url": receiver.url, field: value},
                token=token,
            )
            assert status == 400 and body["error"].startswith(field), body
        names = {row.name for row in await bridge.store.stored_subscriptions()}
        assert names == {"a1", "operators"}


async def test_without_an_encryption_key_secrets_are_refused_clearly(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = accounts_config(mosquitto, tmp_path, store={"encryption_key": ""})
    async with running_bridge(config), admin_client(config) as admin:
        status, body = await admin.post(
            "/api/subscriptions", json={"name": "signed", "url": receiver.url}
        )
        assert status == 409 and "store.encryption_key is not set" in body["error"]
        status, body = await admin.post(
            "/api/subscriptions",
            json={
                "name": "bearer",
                "url": receiver.url,
                "secret": None,
                "auth": {"type": "bearer", "token": "t0ken-of-the-receiver"},
            },
        )
        assert status == 409
        unsigned = await subscribe(admin, "unsigned", receiver.url, secret=None)
        assert unsigned["secret"] is None and unsigned["secret_hint"] is None
        with Publisher(mosquitto.port) as device:
            device.publish_all([_event("d1", 1)])
        await wait_until(lambda: len(receiver.requests) == 1)
        assert "webhook-signature" not in receiver.requests[0].headers


def test_a_secret_hint_is_the_prefix_and_the_last_four_characters() -> None:
    from bridge.admin.accounts.specs import secret_hint

    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    assert secret_hint(secret) == f"whsec_…{secret[-4:]}"
    assert secret_hint(RAW_SECRET) == f"…{RAW_SECRET[-4:]}"
    assert secret_hint("whsec_abc") == "whsec_…"
    assert secret_hint(None) is None
