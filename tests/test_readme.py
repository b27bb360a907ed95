"""The README and docs/ a user reads: full catalogue, working links, examples that really run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from bridge.config import Settings, parse_config
from bridge.core.events import CATALOGUE, Event
from bridge.core.formats import FORMATS
from bridge.core.normalise import Message, Normalised, Normaliser, Rejected
from bridge.core.signing import sign
from tests.conftest import SECRET, running_bridge
from tests.support.admin import admin_client, admin_config
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.publisher import Publisher
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = {path.name: path.read_text(encoding="utf-8") for path in sorted(DOCS.glob("*.md"))}
EVENTS = PAGES["events.md"]
REPOSITORY_PATH = re.compile(r"`((?:config|deploy|bench|tests)/[\w./-]*)`")


def _block(text: str, after: str, language: str) -> str:
    """The first fenced block of ``language`` after the text ``after``."""
    assert after in text, f"{after!r} is missing"
    section = text.split(after, 1)[1] if after else text
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, f"no {language} block after {after!r}"
    return match.group(1)


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (MkDocs, GitHub alike) gives a heading."""
    text = unicodedata.normalize("NFKD", heading.replace("`", "")).encode("ascii", "ignore")
    words = re.sub(r"[^\w\s-]", "", text.decode("ascii")).strip().lower()
    return re.sub(r"[-\s]+", "-", words)


def _anchors(text: str) -> set[str]:
    unfenced = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", unfenced, re.M)}


def _signed(body: bytes) -> dict[str, str]:
    stamp = int(time.time())
    return {
        "webhook-id": "evt_readme1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SECRET, "evt_readme1", stamp, body),
        "content-type": "application/json",
    }


def _env_for(block: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in re.findall(r"\$\{(\w+)", block):
        monkeypatch.setenv(name, SECRET if name.endswith("SECRET") else "an-example-value")


def test_the_readme_is_a_front_door() -> None:
    assert len(README.splitlines()) <= 250
    for heading in (
        "## The two commands",
        "## Running it against your broker",
        "## The events",
        "## Verifying a signature in a receiver",
        "## Documentation",
    ):
        assert f"\n{heading}\n" in README, heading
    assert README.index("make demo") < README.index("## Running it against your broker")
    for page in PAGES:
        if page != "index.md":
            assert f"](docs/{page})" in README, f"the README does not link {page}"


def test_links_from_the_readme_resolve() -> None:
    links = re.findall(r"\]\(((?:docs|config|deploy|bench)/[^)]+)\)", README)
    assert links
    for link in links:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), link
        if anchor:
            assert anchor in _anchors((ROOT / path).read_text(encoding="utf-8")), link


def test_repository_files_named_in_the_docs_exist() -> None:
    for name, text in [("README.md", README), *PAGES.items()]:
        for path in REPOSITORY_PATH.findall(text):
            if "/." in path:  # made at run time (bench/.cache/)
                continue
            assert (ROOT / path).exists(), f"{name} names {path}, which does not exist"


def test_the_docs_build_into_a_site_with_every_link_resolved(tmp_path: Path) -> None:
    site = tmp_path / "site"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    done = subprocess.run(
        [*command, "--config-file", str(ROOT / "mkdocs.yml")],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    listed = {page for entry in nav for page in entry.values()}
    assert listed == set(PAGES)
    for page in PAGES:
        html = site / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert html.exists(), html


def test_the_readme_names_every_catalogue_type() -> None:
    rows = {m.group(1) for m in re.finditer(r"^\| `([a-z_]+\.[a-z_]+)` \| ", README, re.M)}
    assert set(CATALOGUE) <= rows, sorted(set(CATALOGUE) - rows)


def test_every_catalogue_type_has_a_full_sample_the_schema_accepts() -> None:
    schema = json.loads((ROOT / "config" / "events.schema.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema)
    documented = set()
    for match in re.finditer(r"^### `([a-z_]+\.[a-z_]+)`\n(.*?)(?=^#)", EVENTS, re.M | re.S):
        sample = json.loads(_block(match.group(2), "", "json"))
        assert sample["type"] == match.group(1)
        assert not list(validator.iter_errors(sample)), match.group(1)
        documented.add(match.group(1))
    assert set(CATALOGUE) <= documented, sorted(set(CATALOGUE) - documented)
    for text in (README, EVENTS):  # the envelope shown first
        envelope = json.loads(_block(text, "", "json"))
        assert not list(validator.iter_errors(envelope))


def test_every_section_of_the_config_is_in_the_reference() -> None:
    reference = PAGES["configuration.md"]
    for section in Settings.model_fields:
        assert f"\n## `{section}`\n" in reference, section


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_quick_start_config_is_valid(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    block = _block(text, "## Running it against your broker", "sh")
    document = block.split("<<'YAML'\n", 1)[1].split("\nYAML\n", 1)[0]
    _env_for(document, monkeypatch)
    settings = parse_config(yaml.safe_load(document))
    assert [s.name for s in settings.subscriptions] == ["crm"]


def test_every_yaml_example_in_the_docs_is_a_valid_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked = 0
    for name, text in PAGES.items():
        for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL):
            _env_for(block, monkeypatch)
            document = yaml.safe_load(block)
            assert set(document) <= set(Settings.model_fields), name
            parse_config(document)
            checked += 1
    assert checked >= 7


def test_rule_example_maps_the_message_as_the_page_says() -> None:
    page = PAGES["devices.md"]
    rules = yaml.safe_load(_block(page, "## Mapping your own topics", "yaml"))
    normaliser = Normaliser(parse_config(rules), source="mqtt://broker-1:1883")
    given = re.search(r"with\n`(\{.*?\})` becomes", page)
    said = re.search(r"`data: (\{.*?\})`", page, re.S)
    assert given and said, "the worked example of the rule is missing"
    payload = json.loads(given.group(1))
    received = datetime(2026, 11, 22, 4, 36, 14, tzinfo=UTC)
    message = Message("site/jkt/rdp/pc-9/connect", json.dumps(payload).encode(), received)
    result = normaliser.normalise(message)
    assert isinstance(result, Normalised), result
    assert result.event.type == "session.started"
    assert result.event.data == json.loads(said.group(1).replace("\n", " "))
    reboot = Message("site/jkt/rdp/pc-9/reboot", json.dumps(payload).encode(), received)
    assert isinstance(normaliser.normalise(reboot), Rejected)


@pytest.mark.parametrize("page", ["README.md", "docs/events.md"])
async def test_python_receiver_sample_verifies_a_bridge_signature(
    page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace: dict[str, object] = {}
    source = _block((ROOT / page).read_text(encoding="utf-8"), "Python, with the", "python")
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", SECRET)
    exec(compile(source, page, "exec"), namespace)  # the sample exactly as shown
    app = web.Application()
    app.router.add_post("/hook", namespace["hookbridge"])  # type: ignore[arg-type]
    body = json.dumps({"type": "device.online", "data": {"device_id": "dev-1"}}).encode()
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        good = await client.post("/hook", data=body, headers=_signed(body))
        bad = await client.post("/hook", data=body + b" ", headers=_signed(body))
    assert (good.status, bad.status) == (204, 401)


def _catalogue_samples() -> dict[str, bytes]:
    """The full sample of each catalogue type in docs/events.md, as bytes to send."""
    samples = {}
    for match in re.finditer(r"^### `([a-z_]+\.[a-z_]+)`\n(.*?)(?=^#)", EVENTS, re.M | re.S):
        samples[match.group(1)] = _block(match.group(2), "", "json").encode()
    return samples


def _receiver_app(
    page: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[web.Application, list[tuple[str, int]]]:
    """The page's Python receiver as an app on ``/hook``; the (type, status) it answered."""
    namespace: dict[str, object] = {}
    source = _block((ROOT / page).read_text(encoding="utf-8"), "Python, with the", "python")
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", SECRET)
    exec(compile(source, page, "exec"), namespace)  # the sample exactly as shown
    handler = namespace["hookbridge"]
    answered: list[tuple[str, int]] = []

    async def hook(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)  # type: ignore[operator]
        except Exception:  # what aiohttp would answer: a 500
            response = web.Response(status=500)
        kind = json.loads(await request.read()).get("type", "?")
        answered.append((kind, response.status))
        return response

    app = web.Application()
    app.router.add_post("/hook", hook)
    return app, answered


@pytest.mark.parametrize("page", ["README.md", "docs/events.md"])
async def test_python_receiver_sample_answers_2xx_to_every_catalogue_type(
    page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, answered = _receiver_app(page, monkeypatch)
    samples = _catalogue_samples()
    assert set(CATALOGUE) <= set(samples)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for body in samples.values():
            await client.post("/hook", data=body, headers=_signed(body))
    assert answered == [(kind, 204) for kind in samples]


async def test_readme_receiver_answers_2xx_to_a_running_bridge(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's receiver behind a real bridge: the test ping (a ``bridge.*`` event)
    and device events are answered 2xx, so none of them retries or goes dead."""
    app, answered = _receiver_app("README.md", monkeypatch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sub = {"name": "crm", "url": f"http://127.0.0.1:{port}/hook", "secret": SECRET}
    config = admin_config(mosquitto, tmp_path, [sub])
    now = datetime.now(UTC).isoformat()
    try:
        async with running_bridge(config), admin_client(config) as admin:
            status, ping = await admin.post("/api/subscriptions/crm/test")
            assert status == 200
            assert (ping["outcome"], ping["status_code"]) == ("delivered", 204)
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [
                        ("devices/rd-1/status", "online"),
                        (
                            "devices/rd-1/events",
                            {"type": "session.started", "session_id": "s-1", "occurred_at": now},
                        ),
                        ("devices/rd-1/status", "offline"),
                    ]
                )
                await wait_until(lambda: len(answered) >= 4, timeout=15)
    finally:
        await runner.cleanup()
    assert answered == [
        ("bridge.test", 204),
        ("device.online", 204),
        ("session.started", 204),
        ("device.offline", 204),
    ]


def test_javascript_sample_verifies_a_bridge_signature(tmp_path: Path) -> None:
    body = b'{"type":"session.started","data":{"device_id":"dev-42"}}'
    headers = _signed(body)
    script = tmp_path / "verify.js"
    script.write_text(
        _block(EVENTS, "JavaScript (Node", "js")
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


def _profile_examples() -> list[tuple[str, str, str, str]]:
    """(topic, payload, type, shown data) of each worked example under Built-in profiles."""
    section = PAGES["devices.md"].split("## Built-in profiles", 1)[1].split("\n## ", 1)[0]
    examples = []
    for block in re.findall(r"```\n(.*?)```", section, re.DOTALL):
        for example in block.strip().split("\n\n"):
            topic, rest = example.split("\n", 1)
            payload, arrow = rest.split("→ ", 1)
            kind, _, shown = arrow.strip().partition(" ")
            examples.append((topic, payload, kind, shown.strip()))
    return examples


def test_profile_examples_map_as_the_page_says() -> None:
    profiles = {"profiles": ["native", "emqx", "aws_iot", "remote_access"]}
    normaliser = Normaliser(parse_config(profiles), source="mqtt://broker-1:1883")
    received = datetime(2026, 11, 22, 4, 36, 14, tzinfo=UTC)
    examples = _profile_examples()
    assert len(examples) == 5
    for topic, payload, kind, shown in examples:
        result = normaliser.normalise(Message(topic, payload.encode(), received))
        assert isinstance(result, Normalised), (topic, result)
        assert result.event.type == kind, topic
        if not shown:
            continue
        partial = shown.endswith("…}")
        expected = json.loads(shown.replace(", …}", "}"))
        data = result.event.data
        got = {k: data.get(k) for k in expected} if partial else data
        assert got == expected, topic


def test_payload_format_samples_are_what_the_encoders_send() -> None:
    section = EVENTS.split("## Payload formats", 1)[1]
    event = Event(
        "evt_2nfxk3jq8wlm0az1cd5gq7ptwe",
        "session.started",
        datetime(2026, 11, 22, 4, 36, 14, 553000, tzinfo=UTC),
        "mqtt://broker-1:1883/devices/dev-42/events",
        {"device_id": "dev-42", "seq": 17, "tags": ["a"]},
    )
    xml = FORMATS["xml"](event)
    assert xml.body.decode().strip() == _block(section, "", "xml").strip()
    structured = FORMATS["cloudevents"](event)
    assert json.loads(structured.body) == json.loads(_block(section, "", "json"))
    binary = FORMATS["cloudevents-binary"](event)
    for header in binary.extra_headers:
        assert f"`{header}`" in section, header
    assert f"the body is `{binary.body.decode().replace(',', ', ').replace(':', ': ')}`" in section


async def test_readme_receiver_runs_as_pasted(tmp_path: Path) -> None:
    """The README's receiver, saved as a file and run as it says: no app to add."""
    source = _block(README, "Python, with the", "python")
    assert "pip install standardwebhooks aiohttp" in README  # its dependencies, named
    script = tmp_path / "receiver.py"
    script.write_text(source)
    port = free_port()
    out = tmp_path / "receiver.txt"
    env = {**os.environ, "CRM_WEBHOOK_SECRET": SECRET, "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    process = _run_script(script, out, env)
    try:
        await wait_until(
            lambda: _listening(port) or process.poll() is not None, message="the receiver up"
        )
        assert process.poll() is None, out.read_text()
        body = json.dumps({"type": "session.started", "data": {"device_id": "dev-1"}}).encode()
        url = f"http://127.0.0.1:{port}/hooks/iot"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=body, headers=_signed(body)) as good:
                assert good.status == 204
            async with http.post(url, data=body + b" ", headers=_signed(body)) as bad:
                assert bad.status == 401
        await wait_until(lambda: "session.started dev-1" in out.read_text())
    finally:
        process.terminate()
        process.wait(10)


def _run_script(script: Path, out: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, str(script)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=script.parent,
        )


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
