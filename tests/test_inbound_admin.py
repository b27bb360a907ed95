"""Inbound messages in the admin API, the CLI and /metrics, against a running bridge.

A private mosquitto whose ACL refuses ``devices/+/commands`` (PUBACK 0x87)
makes a message with a short ``max_age`` go dead for real; once the ACL
allows the topic, an operator's replay publishes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import running_bridge
from tests.support.admin import TOKEN, Admin, admin_client, admin_config, api_url
from tests.support.cli import hookbridge
from tests.support.inbound import command_route, signed_request
from tests.support.mosquitto import AclBroker
from tests.support.publisher import Publisher
from tests.support.waiting import wait_until

INBOUND = [
    command_route("short", max_age="1s"),
    command_route(
        "events", topic="devices/{body.device_id}/events", allow_topics=["devices/+/events"]
    ),
]


async def _post(admin: Admin, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    body, headers = signed_request(payload)
    async with admin.session.post(admin.base + path, data=body, headers=headers) as response:
        assert response.status == 202
        answer: dict[str, Any] = await response.json()
        return answer


async def _status_of(admin: Admin, message_id: str) -> str:
    status, body = await admin.get(f"/api/inbound/{message_id}")
    assert status == 200, body
    return str(body["status"])


async def test_inbound_messages_in_the_api_the_cli_and_metrics(
    acl_broker: AclBroker, tmp_path: Path
) -> None:
    broker = acl_broker.broker
    config = admin_config(broker, tmp_path, [], inbound=INBOUND)
    flags = ["--url", api_url(config), "--token", TOKEN]
    async with running_bridge(config), admin_client(config) as admin:
        with Publisher(broker.port) as device:
            device.subscribe("devices/#")
            command = await _post(admin, "/inbound/short", {"device_id": "d1", "do": "reboot"})
            event = await _post(admin, "/inbound/events", {"device_id": "d2", "n": 1})

            async def settled() -> bool:
                return await _status_of(admin, command["id"]) == "dead" and (
                    await _status_of(admin, event["id"]) == "published"
                )

            await wait_until(settled, timeout=20, message="one dead, one published")

            status, page = await admin.get("/api/inbound")
            assert status == 200
            assert [m["id"] for m in page["messages"]] == [event["id"], command["id"]]
            assert page["next_cursor"] is None
            status, dead = await admin.get("/api/inbound", params={"status": "dead"})
            assert [m["id"] for m in dead["messages"]] == [command["id"]]
            (shown,) = dead["messages"]
            assert shown["dead_reason"] == "too_old"
            assert shown["inbound"] == "short"
            assert shown["attempts"] >= 1
            assert "0x87" in shown["last_error"]
            status, first = await admin.get("/api/inbound", params={"limit": "1"})
            assert first["next_cursor"] is not None
            status, rest = await admin.get(
                "/api/inbound", params={"limit": "1", "cursor": first["next_cursor"]}
            )
            assert [m["id"] for m in rest["messages"]] == [command["id"]]
            status, one = await admin.get(f"/api/inbound/{command['id']}")
            assert json.loads(one["payload"]) == {"device_id": "d1", "do": "reboot"}
            assert one["topic"] == "devices/d1/commands"

            # Refusals: an unknown id, a bad filter or cursor, a wrong token.
            assert (await admin.get("/api/inbound/inb_nope"))[0] == 404
            assert (await admin.get("/api/inbound", params={"status": "sent"}))[0] == 400
            assert (await admin.get("/api/inbound", params={"cursor": "x"}))[0] == 400
            assert (await admin.post("/api/inbound/inb_nope/replay"))[0] == 404
            assert (await admin.get("/api/inbound", token="wrong"))[0] == 401

            # The CLI: a table, one message with its payload, JSON.
            code, out, err = await hookbridge("inbound", "list", *flags)
            assert code == 0, err
            assert "MESSAGE" in out
            assert command["id"] in out
            assert "dead (too_old)" in out
            code, out, err = await hookbridge("inbound", "show", command["id"], *flags)
            assert code == 0, err
            assert "devices/d1/commands" in out
            assert '"reboot"' in out
            code, out, _ = await hookbridge(
                "inbound", "list", "--status", "published", *flags, "--json"
            )
            assert [m["id"] for m in json.loads(out)["messages"]] == [event["id"]]
            code, _, err = await hookbridge("inbound", "replay", "inb_nope", *flags)
            assert code == 1
            assert "no inbound message" in err

            # /metrics
            _, text = await admin.get("/metrics")
            assert 'hookbridge_inbound_accepted_total{inbound="short"} 1.0' in text
            assert 'hookbridge_inbound_dead_total{inbound="short"} 1.0' in text
            assert 'hookbridge_inbound_published_total{inbound="events"} 1.0' in text
            assert "hookbridge_inbound_oldest_pending_age_seconds" in text

            # The operator fixes the ACL and replays the dead command: published.
            acl_broker.allow_commands()
            received_before = len(device.received)
            code, out, err = await hookbridge("inbound", "replay", command["id"], *flags)
            assert code == 0, err
            # Due now: the publisher may take it before the answer is read back.
            assert f"{command['id']}: pending" in out or f"{command['id']}: published" in out

            async def republished() -> bool:
                return await _status_of(admin, command["id"]) == "published"

            # The ACL reload and the replay race: a refused try is retried within max_age,
            # else the message dies again and is replayed once more.
            async def published_or_replayed() -> bool:
                if await republished():
                    return True
                if await _status_of(admin, command["id"]) == "dead":
                    await admin.post(f"/api/inbound/{command['id']}/replay")
                return False

            await wait_until(published_or_replayed, timeout=20, message="replayed and published")
            await wait_until(
                lambda: any("commands" in m.topic for m in device.received[received_before:]),
                timeout=10,
                message="the device got the command",
            )
            commands = [m for m in device.received[received_before:] if "commands" in m.topic]
            assert commands[0].properties.CorrelationData == command["id"].encode()
            # A published message may be sent again on purpose.
            status, again = await admin.post(f"/api/inbound/{command['id']}/replay")
            assert status == 200
            assert again["status"] == "pending"
