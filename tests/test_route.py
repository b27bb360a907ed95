"""The router: event-type globs, JMESPath filters, disabled subscriptions."""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import Subscription
from bridge.core.events import CATALOGUE, Event
from bridge.core.route import Router, jmespath_truthy

STAMP = datetime(2026, 11, 22, 4, 36, 14, tzinfo=UTC)


def event(event_type: str = "session.started", **data: Any) -> Event:
    return Event(
        id="evt_test",
        type=event_type,
        timestamp=STAMP,
        source="mqtt://broker-1:1883/devices/dev-42/events",
        data={"device_id": "dev-42", **data},
    )


def subscription(name: str, events: list[str], **kw: Any) -> Subscription:
    return Subscription(name=name, url="https://hooks.example.com/in", events=events, **kw)


def names(subscriptions: list[Subscription]) -> list[str]:
    return [s.name for s in subscriptions]


def test_globs_exact_wildcard_and_family() -> None:
    router = Router(
        [
            subscription("all", ["*"]),
            subscription("devices", ["device.*"]),
            subscription("starts", ["session.started", "file_transfer.started"]),
            subscription("failures", ["*.failed"]),
        ]
    )
    assert names(router.match(event("session.started"))) == ["all", "starts"]
    assert names(router.match(event("device.online"))) == ["all", "devices"]
    assert names(router.match(event("bulk_deployment.failed"))) == ["all", "failures"]
    assert names(router.match(event("session.ended"))) == ["all"]


def test_globs_are_case_sensitive_and_whole() -> None:
    router = Router([subscription("s", ["session.start"]), subscription("d", ["Device.*"])])
    assert router.match(event("session.started")) == []
    assert router.match(event("device.online")) == []


def test_disabled_subscriptions_never_match() -> None:
    router = Router([subscription("off", ["*"], enabled=False), subscription("on", ["*"])])
    assert names(router.match(event())) == ["on"]


@pytest.mark.parametrize(
    ("expression", "wanted"),
    [
        ("data.site == 'jakarta'", True),
        ("data.site == 'bandung'", False),
        ("data.seq", True),  # 0 is true in JMESPath
        ("data.tags", False),  # [] is false
        ("data.missing", False),
        ("contains(data.tags, 'vip')", False),
        ("type == 'session.started' && data.seq < `5`", True),
        ("starts_with(source, 'mqtt://broker-1')", True),
        ("length(data.seq)", False),  # a type error at evaluation: no match, no exception
        ("data.site > `3`", False),  # comparing text with a number gives null
    ],
)
def test_filters(expression: str, wanted: bool) -> None:
    router = Router([subscription("f", ["*"], filter=expression)])
    matched = router.match(event(site="jakarta", seq=0, tags=[]))
    assert names(matched) == (["f"] if wanted else [])


def test_a_failing_filter_does_not_hide_other_subscriptions() -> None:
    router = Router(
        [
            subscription("broken", ["*"], filter="length(data.seq)"),
            subscription("plain", ["*"]),
            subscription("site", ["session.*"], filter="data.site == 'jakarta'"),
        ]
    )
    assert names(router.match(event(site="jakarta", seq=3))) == ["plain", "site"]


def test_results_do_not_alias_the_cache() -> None:
    router = Router([subscription("a", ["*"]), subscription("b", ["device.*"])])
    first = router.match(event("device.online"))
    first.clear()
    assert names(router.match(event("device.online"))) == ["a", "b"]


def test_the_type_cache_stays_bounded_and_correct() -> None:
    router = Router([subscription("x", ["x.*"])])
    for i in range(3000):
        assert names(router.match(event(f"x.{i}"))) == ["x"]
    assert names(router.match(event("x.0"))) == ["x"]


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        (None, False),
        (False, False),
        ("", False),
        ([], False),
        ({}, False),
        (0, True),
        ("a", True),
        ([0], True),
    ],
)
def test_jmespath_truthiness(value: object, truthy: bool) -> None:
    assert jmespath_truthy(value) is truthy


# --- against a naive reference --------------------------------------------------------------

GLOBS = st.one_of(
    st.sampled_from(
        [
            "*",
            "device.*",
            "session.*",
            "*.failed",
            "*.started",
            "session.started",
            "file_transfer.?ailed",
            "[db]*",
            "[!d]*",
        ]
    ),
    st.sampled_from(sorted(CATALOGUE)),
    st.text(alphabet="abcdeins._*?[]!", max_size=12),
)
TYPES = st.one_of(st.sampled_from(sorted(CATALOGUE)), st.text(max_size=20))
SUBSCRIPTIONS = st.lists(
    st.tuples(st.lists(GLOBS, min_size=1, max_size=3), st.booleans()),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(specs=SUBSCRIPTIONS, event_types=st.lists(TYPES, min_size=1, max_size=6))
def test_matches_a_naive_fnmatch_reference(
    specs: list[tuple[list[str], bool]], event_types: list[str]
) -> None:
    subscriptions = [
        subscription(f"s{i}", globs, enabled=enabled) for i, (globs, enabled) in enumerate(specs)
    ]
    router = Router(subscriptions)
    # Every type twice: once filling the cache, once reading it.
    for event_type in event_types + event_types:
        expected = [
            s
            for s in subscriptions
            if s.enabled and any(fnmatch.fnmatchcase(event_type, glob) for glob in s.events)
        ]
        assert router.match(event(event_type)) == expected
