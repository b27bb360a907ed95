"""The README a user reads: complete catalogue, working links, code samples that really verify."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import Settings, parse_config
from bridge.events import CATALOGUE
from bridge.signing import sign
from tests.conftest import SECRET

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block(after_heading: str, language: str) -> str:
    section = README.split(after_heading, 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, f"no {language} block after {after_heading!r}"
    return match.group(1)


def _signed(body: bytes) -> dict[str, str]:
    stamp = int(time.time())
    return {
        "webhook-id": "evt_readme1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SECRET, "evt_readme1", stamp, body),
        "content-type": "application/json",
    }


def test_every_catalogue_type_is_documented_with_a_sample() -> None:
    rows = {m.group(1) for m in re.finditer(r"^\| `([a-z_]+\.[a-z_]+)` \| `\{", README, re.M)}
    assert set(CATALOGUE) <= rows, sorted(set(CATALOGUE) - rows)


def test_sections_and_links() -> None:
    for heading in (
        "## The two commands",
        "## Running it against your broker",
        "## Configuration reference",
        "## The event catalogue",
        "## Headers",
        "## Verifying a signature in a receiver",
        "## Mapping your own topics with rules",
        "## Operating HookBridge",
        "## Guarantees",
        "## Device presence, profiles and ordering",
        "## Push, pipe and plugin",
        "## Running in production",
        "## Performance",
    ):
        assert f"\n{heading}\n" in README, heading
    for link in re.findall(r"\]\(((?:config|deploy|bench)/[^)#]+)\)", README):
        assert (ROOT / link).exists(), link
    assert README.index("make demo") < README.index("## Configuration reference")


def test_every_section_of_the_config_is_in_the_reference() -> None:
    reference = README.split("## Configuration reference", 1)[1].split("## The event catalogue")[0]
    for section in Settings.model_fields:
        assert f"**`{section}`**" in reference, section


def test_rule_example_is_a_valid_config() -> None:
    rules = yaml.safe_load(_block("## Mapping your own topics with rules", "yaml"))
    settings = parse_config(rules)
    assert settings.rules[0].topic == "site/{site}/rdp/{device_id}/{action}"


async def test_python_receiver_sample_verifies_a_bridge_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    namespace: dict[str, object] = {}
    source = _block("Python, with the", "python")
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", SECRET)
    exec(compile(source, "README.md", "exec"), namespace)  # the sample exactly as shown
    app = web.Application()
    app.router.add_post("/hook", namespace["hookbridge"])  # type: ignore[arg-type]
    body = json.dumps({"type": "device.online", "data": {"device_id": "dev-1"}}).encode()
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        good = await client.post("/hook", data=body, headers=_signed(body))
        bad = await client.post("/hook", data=body + b" ", headers=_signed(body))
    assert (good.status, bad.status) == (204, 401)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_javascript_sample_verifies_a_bridge_signature(tmp_path: Path) -> None:
    body = b'{"type":"session.started","data":{"device_id":"dev-42"}}'
    headers = _signed(body)
    script = tmp_path / "verify.js"
    script.write_text(
        _block("JavaScript (Node", "js")
        + f"""
const headers = {json.dumps(headers)};
const body = Buffer.from({json.dumps(body.decode())}, "utf8");
console.log(verifyHookBridge({json.dumps(SECRET)}, headers, body).type);
try {{
  verifyHookBridge({json.dumps(SECRET)}, headers, Buffer.concat([body, Buffer.from(" ")]));
  console.log("accepted tampered");
}} catch (e) {{ console.log("refused tampered"); }}
"""
    )
    done = subprocess.run(
        ["node", str(script)], capture_output=True, text=True, check=True, timeout=30
    )
    assert done.stdout.split() == ["session.started", "refused", "tampered"]
