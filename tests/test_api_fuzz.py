"""Property-based test of the admin API, driven by its own OpenAPI document.

Hypothesis builds requests from the document's paths, parameters and body
schema (plus arbitrary junk where a value is free text) and sends them to a
running bridge; no answer may be a 5xx, every ``/api`` answer is JSON, and
errors have the documented ``{"error": …}`` shape.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.admin.openapi import openapi_document
from tests.conftest import running_bridge
from tests.support.admin import TOKEN, admin_config, api_url
from tests.support.mosquitto import Mosquitto
from tests.support.receiver import receiving

DOCUMENT = openapi_document()
OPERATIONS = sorted(
    (path, method, op) for path, ops in DOCUMENT["paths"].items() for method, op in ops.items()
)
TIMES = st.one_of(
    st.just("2026-01-01T00:00:00Z"),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=30),
)
NAMES = st.one_of(st.sampled_from(["crm", "evt_x", "dlv_x"]), st.text(min_size=1, max_size=20))


def _value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), st.text(max_size=10))
    if schema.get("type") == "integer":
        return st.one_of(
            st.integers(schema.get("minimum", -(10**6)) - 2, schema.get("maximum", 10**6) + 2),
            st.text(max_size=5),
        )
    if "RFC 3339" in schema.get("description", ""):
        return TIMES
    if schema.get("type") == "boolean":
        return st.one_of(st.booleans(), st.text(max_size=5))
    if schema.get("type") == "array":
        return st.lists(st.one_of(NAMES, st.integers()), max_size=3)
    return NAMES


def _replay_body() -> st.SearchStrategy[Any]:
    properties = DOCUMENT["components"]["schemas"]["Replay"]["properties"]
    fields = {name: _value(schema) for name, schema in properties.items()}
    return st.one_of(
        st.fixed_dictionaries({}, optional=fields),
        st.dictionaries(st.text(max_size=8), st.integers(), max_size=2),
        st.lists(st.integers(), max_size=2),
    )


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes | None]:
    path, method, op = draw(st.sampled_from(OPERATIONS))
    query: dict[str, str] = {}
    for parameter in op.get("parameters", []):
        if parameter["in"] == "path":
            segment = urllib.parse.quote(draw(NAMES), safe="")
            path = path.replace("{" + parameter["name"] + "}", segment)
        elif draw(st.booleans()):
            query[parameter["name"]] = str(draw(_value(parameter["schema"])))
    body = None
    if "requestBody" in op:
        body = json.dumps(draw(_replay_body())).encode()
        if draw(st.integers(0, 9)) == 0:
            body = draw(st.binary(max_size=20))
    url = path + ("?" + urllib.parse.urlencode(query) if query else "")
    return method.upper(), url, body


@pytest.fixture(scope="module")
def bridge_url(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A bridge running in its own thread and loop, so hypothesis can drive it synchronously."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    started = threading.Event()
    stop: list[asyncio.Event] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        async with receiving() as receiver:
            config = admin_config(mosquitto, tmp_path, [{"name": "crm", "url": receiver.url}])
            holder.append(api_url(config))
            async with running_bridge(config):
                stop.append(asyncio.Event())
                started.set()
                await asyncio.wait_for(stop[0].wait(), 600)

    holder: list[str] = []
    loop = asyncio.new_event_loop()

    def main() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # reported by the fixture, not lost in the thread
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=main, name="bridge-under-fuzz")
    thread.start()
    assert started.wait(30), "bridge did not start"
    assert not failure, failure
    try:
        yield holder[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(30)
        loop.close()


def _send(url: str, method: str, body: bytes | None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@settings(max_examples=250)
@given(requests())
def test_no_request_from_the_document_breaks_the_api(
    bridge_url: str, request_: tuple[str, str, bytes | None]
) -> None:
    method, path, body = request_
    status, content_type, raw = _send(bridge_url + path, method, body)
    assert status < 500, (method, path, body, raw[:300])
    if path.startswith("/api/"):
        assert content_type.startswith("application/json"), (method, path)
        answer = json.loads(raw)
        if status >= 400:
            assert isinstance(answer.get("error"), str), answer
