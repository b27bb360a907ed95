"""The config loader under arbitrary input: only ConfigError escapes, every problem has a place.

``make test`` runs a few thousand examples per property; ``make fuzz``
(``HYPOTHESIS_PROFILE=fuzz``) runs many more.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import Settings, load_config, parse_config
from bridge.errors import ConfigError

FUZZ = settings(max_examples=2000) if os.environ.get("HYPOTHESIS_PROFILE") != "fuzz" else settings()

SECRET_MARK = "whsec_FUZZsecretVALUE123"

# Keys the loader knows, so the fuzzer reaches deep validation, not just "extra key".
KEYS = [
    "mqtt", "store", "profiles", "presence", "retry", "limits", "retention", "rules",
    "subscriptions", "inbound", "api", "security", "url", "client_id", "protocol",
    "session_expiry", "receive_maximum", "tls", "username", "password", "shared_group",
    "schedule", "jitter", "disable_after", "max_payload", "max_topic_length", "name",
    "events", "filter", "secret", "format", "headers", "timeout", "verify_tls",
    "max_in_flight", "rate_limit", "ordered", "mode", "reply_topic", "circuit", "failures",
    "cool_down", "topic", "type", "data", "from", "map", "listen", "token",
    "allow_private_targets", "path", "allow_topics", "offline_after", "timeout_for",
    "missed_heartbeats",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "5s", "10ms", "7d", "1.5h", "256KB", "50/s", "-1s", "1e999s", "${HB_FUZZ_UNSET}",
            "${HB_FUZZ_UNSET:-x}", "$$", "http://a.example/h", "https://10.0.0.1/x",
            "mqtt://h:1883", "sqlite:///x.db", "json", "pipe", "*", "[", "{", "device.*",
            SECRET_MARK,
        ]
    ),
)  # fmt: skip
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12), st.integers(-3, 3))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=5),
    ),
    max_leaves=25,
)

PLACE = re.compile(r"^.+?: \S", re.DOTALL)  # "place: what is wrong"; keys may be any text


def _check(error: ConfigError) -> None:
    assert error.problems, "a ConfigError names its problems"
    for problem in error.problems:
        assert PLACE.match(problem), problem
        assert SECRET_MARK not in problem
    assert SECRET_MARK not in str(error)


@FUZZ
@given(documents)
def test_any_document_is_settings_or_a_config_error(document: Any) -> None:
    try:
        result = parse_config(document)
    except ConfigError as error:
        if isinstance(document, dict):
            _check(error)
    else:
        assert isinstance(result, Settings)
        assert SECRET_MARK not in repr(result)


VALID: dict[str, Any] = {
    "mqtt": {"url": "mqtt://127.0.0.1:1883", "client_id": "hb", "password": SECRET_MARK},
    "retry": {"schedule": ["5s", "1m"]},
    "subscriptions": [
        {
            "name": "crm",
            "url": "https://crm.example.com/h",
            "secret": SECRET_MARK,
            "headers": {"Authorization": SECRET_MARK},
            "circuit": {"failures": 3, "cool_down": "10s"},
        }
    ],
    "api": {"listen": "127.0.0.1:8080", "token": SECRET_MARK},
}


def _places(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _places(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += _places(child, (*prefix, i))
    return found


PLACES = _places(VALID)


def _replace(document: Any, place: tuple[Any, ...], value: Any) -> Any:
    if not place:
        return value
    head, rest = place[0], place[1:]
    copy: Any = dict(document) if isinstance(document, dict) else list(document)
    copy[head] = _replace(copy[head], rest, value)
    return copy


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PLACES), documents), min_size=1, max_size=3))
def test_a_valid_config_with_bad_values_fails_with_places(
    mutations: list[tuple[tuple[Any, ...], Any]],
) -> None:
    document: Any = VALID
    for place, value in mutations:
        try:
            document = _replace(document, place, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this place
    try:
        result = parse_config(document)
    except ConfigError as error:
        _check(error)
    else:
        # The mark planted as a plain value (a client id, say) is no secret there.
        planted = any(
            SECRET_MARK in repr(value) and not _secret_place(place) for place, value in mutations
        )
        if not planted:
            assert SECRET_MARK not in repr(result)
            assert SECRET_MARK not in str(result.model_dump())


def _secret_place(place: tuple[Any, ...]) -> bool:
    return any(key in {"password", "secret", "token", "headers"} for key in place)


@settings(max_examples=500)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_file_text_loads_or_is_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hookbridge.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            load_config(path)
        except ConfigError as error:
            assert str(error)


@FUZZ
@given(documents)
def test_yaml_round_trip_of_any_document_loads_or_is_a_config_error(document: Any) -> None:
    try:
        text = yaml.safe_dump({"subscriptions": [document]})
    except yaml.YAMLError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hookbridge.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as error:
            _check(error)
