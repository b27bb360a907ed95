"""The accounts' and API subscriptions' commands as real subprocesses against a running bridge."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from standardwebhooks import Webhook

from tests.conftest import running_bridge
from tests.support.accounts import accounts_config
from tests.support.admin import TOKEN, api_url
from tests.support.cli import hookbridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until


async def test_accounts_tokens_subscriptions_and_the_audit_from_the_command_line(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = accounts_config(mosquitto, tmp_path)
    operator = ["--url", api_url(config), "--token", TOKEN]
    async with running_bridge(config):
        code, out, err = await hookbridge("accounts", "create", "acme", *operator)
        assert (code, out.strip()) == (0, "acme: created"), err
        code, out, _ = await hookbridge("tokens", "create", "acme", *operator, "--json")
        issued = json.loads(out)
        token = issued["token"]
        assert code == 0 and token.startswith("hbt_")
        account = ["--url", api_url(config), "--token", token]

        extra = tmp_path / "extra.yaml"
        extra.write_text(yaml.safe_dump({"headers": {"X-Team": "ops-team-value"}}))
        code, out, err = await hookbridge(
            "subscriptions", "create", "acme-crm", receiver.url,
            "--event", "session.*", "--event", "device.added", "--file", str(extra), *account,
        )  # fmt: skip
        assert code == 0, err
        secret = out.split("secret    ", 1)[1].split()[0]
        assert "shown once" in out and "account acme" in out
        with Publisher(mosquitto.port) as device:
            device.publish_all([("tenants/acme/devices/d1/events", {"type": "session.started"})])
        await wait_until(lambda: len(receiver.requests) == 1)
        request = receiver.requests[0]
        Webhook(secret).verify(request.body, request.headers)
        assert request.headers["x-team"] == "ops-team-value"

        code, out, _ = await hookbridge("subscriptions", "show", "acme-crm", *account)
        assert code == 0 and secret not in out and f"whsec_…{secret[-4:]}" in out
        code, out, err = await hookbridge(
            "subscriptions", "update", "acme-crm", "--event", "device.*", *account, "--json"
        )
        assert code == 0, err
        assert json.loads(out)["events"] == ["device.*"]
        code, _, err = await hookbridge("subscriptions", "update", "acme-crm", *account)
        assert code == 2 and "nothing to change" in err
        code, out, _ = await hookbridge("subscriptions", "rotate-secret", "acme-crm", *account)
        assert code == 0 and "new secret whsec_" in out and secret not in out
        code, out, _ = await hookbridge("accounts", "list", *operator)
        assert "acme" in out and "1" in out.splitlines()[1]
        code, _, err = await hookbridge("accounts", "list", *account)
        assert code == 1 and "operator token required (403)" in err
        code, out, _ = await hookbridge("audit", *account)
        assert code == 0
        for action in (
            "subscription.created",
            "subscription.updated",
            "subscription.secret_rotated",
        ):
            assert action in out
        assert issued["id"] in out  # who: the account's token, by its id
        code, out, _ = await hookbridge("subscriptions", "delete", "acme-crm", *account)
        assert (code, out.strip()) == (0, "acme-crm: deleted")
        code, _, err = await hookbridge("subscriptions", "show", "acme-crm", *account)
        assert code == 1 and "(404)" in err

        code, out, _ = await hookbridge("tokens", "list", "acme", *operator)
        assert issued["id"] in out and token not in out
        code, out, _ = await hookbridge("tokens", "revoke", "acme", issued["id"], *operator)
        assert code == 0
        code, _, err = await hookbridge("subscriptions", "list", *account)
        assert code == 1 and "401" in err
        code, out, _ = await hookbridge("accounts", "delete", "acme", *operator)
        assert (code, out.strip()) == (0, "acme: deleted")
