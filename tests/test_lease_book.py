"""The lease book: one owner of what a lane holds, and nothing left behind.

Every way a delivery enters the book (offered fresh, claimed) has a way out
(started and settled, given back, let go); after any sequence of them the
book holds exactly what entered and has not left, and keeps no batch id of a
delivery it no longer holds. That last property is what bounds the
dispatcher's memory: an entry per offered delivery used to stay forever.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.events import Event
from bridge.delivery.book import NO_BATCH, LeaseBook
from bridge.store.rows import Delivery


def _delivery(n: int) -> Delivery:
    event = Event(
        id=f"evt_{n}",
        type="session.started",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        source="mqtt://test",
        data={"device_id": "dev-1"},
    )
    return Delivery(f"dlv_{n}", event, "crm", 0, 0.0)


def test_a_claim_never_takes_a_held_delivery_twice() -> None:
    book = LeaseBook()
    book.offer(_delivery(1))
    book.take([_delivery(1), _delivery(2)])
    assert [d.id for d in book.waiting] == ["dlv_1", "dlv_2"]
    started = book.start_next()
    book.take([started])  # its result is being recorded: still held
    assert [d.id for d in book.waiting] == ["dlv_2"]
    assert book.held == 2
    assert book.settle({"dlv_1"}) is True
    assert book.settle({"dlv_1"}) is False
    assert book.held == 1


def test_giving_back_returns_only_waiting_deliveries() -> None:
    book = LeaseBook()
    book.take([_delivery(n) for n in range(3)])
    started = book.start_next()
    assert book.give_back({started.id, "dlv_2"}) == ["dlv_2"]
    assert book.give_back_all() == ["dlv_1"]
    assert book.holds(started.id) and book.held == 1


def test_batch_ids_are_known_for_waiting_deliveries_only() -> None:
    book = LeaseBook(batching=True)
    book.offer(_delivery(1))
    book.take([_delivery(2), _delivery(3)])
    assert book.batch_of("dlv_1") == NO_BATCH
    assert book.unknown_batches() == ["dlv_2", "dlv_3"]
    book.note_batches({"dlv_2": "bat_x"}, ["dlv_2", "dlv_3", "dlv_gone"])
    assert (book.batch_of("dlv_2"), book.batch_of("dlv_3")) == ("bat_x", NO_BATCH)
    assert book.batch_of("dlv_gone") is None
    book.start({"dlv_1", "dlv_2"})
    assert book.batch_of("dlv_1") is None and book.batch_of("dlv_2") is None
    assert book.give_back({"dlv_3"}) == ["dlv_3"]
    assert book.batch_of("dlv_3") is None


def test_a_lane_that_does_not_batch_keeps_no_batch_ids() -> None:
    book = LeaseBook()
    book.offer(_delivery(1))
    assert book.batch_of("dlv_1") is None
    assert book.unknown_batches() == []


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["offer", "take", "start", "give_back", "give_back_all", "settle"]),
        st.integers(0, 7),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps=_STEPS, batching=st.booleans())
def test_the_book_holds_what_entered_and_did_not_leave(
    steps: list[tuple[str, int]], batching: bool
) -> None:
    book = LeaseBook(batching=batching)
    waiting: list[str] = []
    started: set[str] = set()
    for step, n in steps:
        delivery = _delivery(n)
        held = set(waiting) | started
        if step == "offer" and delivery.id not in held:
            book.offer(delivery)
            waiting.append(delivery.id)
        elif step == "take":
            book.take([delivery])
            if delivery.id not in held:
                waiting.append(delivery.id)
        elif step == "start" and waiting:
            first = book.start_next()
            assert first.id == waiting.pop(0)
            started.add(first.id)
        elif step == "give_back":
            given = book.give_back({delivery.id})
            assert given == ([delivery.id] if delivery.id in waiting else [])
            if delivery.id in waiting:
                waiting.remove(delivery.id)
        elif step == "give_back_all":
            assert book.give_back_all() == waiting
            waiting = []
        elif step == "settle" and delivery.id in started:
            assert book.settle({delivery.id}) is True
            started.discard(delivery.id)
        assert [d.id for d in book.waiting] == waiting
        assert book.held == len(waiting) + len(started)
        assert all(book.holds(i) for i in [*waiting, *started])
    book.give_back_all()
    book.settle({f"dlv_{n}" for n in range(8)})
    assert book.held == 0
    assert all(book.batch_of(f"dlv_{n}") is None for n in range(8))
