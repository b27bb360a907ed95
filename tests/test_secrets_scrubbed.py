"""Secrets stay out of what is kept and printed: excerpts, reloads, ``check-config``.

Receivers here echo every request header back in their answer, as debugging
endpoints do; the kept response excerpt must mask what the bridge sent as
credentials, including values that exist only per request (Basic
credentials, an OAuth2 access token). Secrets a reload brings in are masked
from the reload on. ``check-config`` prints no URL credentials or query.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bridge.app import Bridge
from bridge.config import parse_config, redact_url
from bridge.delivery.auth import secret_values
from bridge.observe.logs import scrub_secrets
from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.admin import Admin, admin_config, api_url
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Received, Receiver, receiving
from tests.support.waiting import wait_until

ACCESS_TOKEN = "at-Zq81vNw0cR4e-only-per-request"


def _echo(request: Received, _n: int) -> Answer:
    # The credentials again and again: one of them sits across the excerpt's cut.
    echoed = f"authorization={request.headers.get('authorization')}; " * 20
    return Answer(500, body=(echoed + json.dumps(request.headers)).encode())


def _token_server(_request: Received, _n: int) -> Answer:
    body = {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600}
    return Answer(200, body=json.dumps(body).encode())


async def _excerpts(bridge: Bridge, receiver: Receiver, name: str) -> list[str]:
    """Kept excerpts of the deliveries ``receiver`` saw for subscription ``name``."""
    ids = {
        r.headers["hookbridge-delivery-id"]
        for r in receiver.requests
        if r.headers.get("hookbridge-delivery-id")
    }
    kept: list[str] = []
    for delivery_id in sorted(ids):
        delivery = await bridge.store.get_delivery(delivery_id)
        if delivery is None or delivery.subscription != name:
            continue
        kept += [a.response_excerpt or "" for a in await bridge.store.attempts(delivery_id)]
    return kept


def _event(mark: str) -> tuple[str, dict[str, Any]]:
    return "devices/dev-1/events", {"type": "session.started", "id": mark}


async def test_basic_and_oauth2_values_echoed_by_a_receiver_are_masked_in_excerpts(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with receiving(_echo) as receiver, receiving(_token_server) as tokens:
        basic = {"type": "basic", "username": "bridge-user", "password": "b4sic-Pw-77"}
        oauth = {
            "type": "oauth2_client_credentials",
            "token_url": tokens.url,
            "client_id": "bridge",
            "client_secret": "cl1ent-s3cret-99",
        }
        subs = [
            {"name": "basic", "url": receiver.url + "/basic", "secret": SECRET, "auth": basic},
            {"name": "oauth", "url": receiver.url + "/oauth", "secret": SECRET, "auth": oauth},
        ]
        config = bridge_config(
            mosquitto,
            tmp_path,
            subs,
            limits={"response_body_kept": 300},
            retry={"schedule": ["1h"]},
        )
        credentials = base64.b64encode(b"bridge-user:b4sic-Pw-77").decode()
        async with running_bridge(config) as bridge:
            with Publisher(mosquitto.port) as device:
                device.publish_all([_event("e-1")])
            await wait_until(lambda: len(receiver.requests) >= 2, timeout=10)

            async def both_kept() -> bool:
                return all(
                    [
                        await _excerpts(bridge, receiver, "basic"),
                        await _excerpts(bridge, receiver, "oauth"),
                    ]
                )

            await wait_until(both_kept, timeout=10, message="both attempts recorded")
            sent = {r.path: r.headers["authorization"] for r in receiver.requests}
            assert sent["/hook/basic"] == f"Basic {credentials}"
            assert sent["/hook/oauth"] == f"Bearer {ACCESS_TOKEN}"
            kept = await _excerpts(bridge, receiver, "basic") + await _excerpts(
                bridge, receiver, "oauth"
            )
            text = "\n".join(kept)
            assert "**********" in text
            # No whole value, and no piece of one cut at the excerpt's end.
            for secret in (credentials, ACCESS_TOKEN):
                assert secret not in text
                assert not any(secret[:8] in excerpt for excerpt in kept), kept


async def test_secrets_a_reload_brings_in_are_masked_from_then_on(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with receiving(_echo) as receiver:
        token = "rel0aded-bearer-5c1e7d"  # unique to this test: no other test registers it
        config = admin_config(
            mosquitto,
            tmp_path,
            [{"name": "crm", "url": receiver.url + "?key=q-secret-1", "secret": SECRET}],
            retry={"schedule": ["1h"]},
        )
        path = tmp_path / "hookbridge.yaml"
        path.write_text(yaml.safe_dump(config))
        admin = Admin(api_url(config))
        try:
            async with running_bridge(config) as bridge:
                bridge.config_path = path
                assert token in scrub_secrets(f"before {token}")
                config["subscriptions"][0]["auth"] = {"type": "bearer", "token": token}
                path.write_text(yaml.safe_dump(config))
                status, body = await admin.post("/api/reload")
                assert (status, body["changed"]) == (200, ["crm"]), body
                # The log filter masks it now (a log line, an error, an excerpt).
                assert scrub_secrets(f"after {token}") == "after **********"
                with Publisher(mosquitto.port) as device:
                    device.publish_all([_event("e-2")])
                await wait_until(lambda: len(receiver.requests) == 1, timeout=10)
                assert receiver.requests[0].headers["authorization"] == f"Bearer {token}"

                async def kept() -> list[str]:
                    return await _excerpts(bridge, receiver, "crm")

                await wait_until(lambda: _non_empty(kept()), timeout=10, message="attempt kept")
                assert all(token not in excerpt for excerpt in await kept())
                # The API (and the dashboard showing it) lists the URL without its query.
                _, listed = await admin.get("/api/subscriptions")
                (crm,) = listed["subscriptions"]
                assert crm["url"] == f"http://127.0.0.1:{receiver.port}/hook?***"
        finally:
            await admin.close()


async def _non_empty(values: Any) -> bool:
    return bool(await values)


def test_check_config_prints_no_url_credentials_or_query(tmp_path: Path) -> None:
    config = tmp_path / "hookbridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"url": "postgresql://hb:db-pw@456@db.example/hookbridge?sslmode=require"},
                "subscriptions": [
                    {
                        "name": "crm",
                        "url": "https://key-789@crm.example.com/hooks?token=query-tok-000#frag",
                    },
                    {"name": "erp", "url": "https://u:url-pw-321@erp.example.com/in"},
                ],
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "check-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert "crm.example.com/hooks?***" in out
    assert "erp.example.com/in" in out
    for secret in ("db-pw", "456@", "key-789", "query-tok-000", "url-pw-321", "frag"):
        assert secret not in out, out


def test_the_store_urls_password_is_masked_wherever_it_turns_up() -> None:
    """A driver's error may quote the store URL, with its password as written or decoded."""
    settings = parse_config(
        {"store": {"url": "postgresql://hb:s3cr%40t@pw@db.example:5432/hookbridge"}}
    )
    values = secret_values(settings)
    assert "s3cr%40t@pw" in values and "s3cr@t@pw" in values
    assert redact_url(settings.store.url) == "postgresql://hb:***@db.example:5432/hookbridge"


def test_log_lines_mask_secrets_inside_lists_and_dicts_too() -> None:
    # A process of its own: configure_logging() sets up the process-wide logger.
    script = (
        "from bridge.observe.logs import configure_logging, get_logger, register_secrets\n"
        "register_secrets(['n3sted-s3cret'])\n"
        "configure_logging(json=True)\n"
        "get_logger('t').warning('reload refused', problems=['a: n3sted-s3cret'],"
        " detail={'k': ('n3sted-s3cret',)})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert line["problems"] == ["a: **********"]
    assert line["detail"] == {"k": ["**********"]}
    assert "n3sted-s3cret" not in done.stderr
