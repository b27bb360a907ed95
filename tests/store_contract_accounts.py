"""The accounts part of the store conformance suite: what each backend records and keeps.

:class:`AccountsStoreContract` is a base of ``tests.store_contract.StoreContract``,
so every backend runs it with the same ``store`` fixture: the account recorded on
events, deliveries (their subscription's), rejections and devices; devices and
presence keyed by (account, device id); managed subscriptions with their
revisions, names, limits and deletes; tokens; the audit trail.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.core.events import Event
from bridge.core.presence import Observation, Presence
from bridge.errors import StoreError
from bridge.store.accounts import (
    AuditNote,
    Created,
    StoredSubscription,
    SubscriptionUpdate,
    Updated,
)
from bridge.store.base import Store
from bridge.store.rows import Accepted, DeliveryStatus, Rejection
from tests.store_contract_device import POLICY

__all__ = ["AccountsStoreContract"]

T0 = 1_800_000_000.0


def _event(n: int, device: str, account: str | None) -> Event:
    return Event(
        id=f"evt_acct_{n}",
        type="session.started",
        timestamp=datetime.fromtimestamp(T0, UTC),
        source=f"mqtt://broker/tenants/{account}/devices/{device}/events",
        data={"device_id": device},
        account=account,
    )


def _seen(n: int, device: str, account: str | None) -> Accepted:
    observation = Observation(device, T0 + n, account=account or "")
    return Accepted(_event(n, device, account), ("ops", "acme-hook"), T0 + n, presence=observation)


def _note(action: str, target: str, account: str = "", at: float = T0) -> AuditNote:
    return AuditNote(at, "operator", None, account, action, target, {"k": "v"})


def _row(name: str, account: str = "", revision: int = 1) -> StoredSubscription:
    spec = {"name": name, "url": "https://x.example/hook"}
    return StoredSubscription(name, account, revision, spec, b"sealed-bytes", T0, T0)


class AccountsStoreContract:
    async def test_the_account_is_recorded_and_devices_are_keyed_by_it(self, store: Store) -> None:
        owners = {"acme-hook": "acme"}
        items = [_seen(1, "shared", "acme"), _seen(2, "shared", "globex"), _seen(3, "shared", None)]
        rejected = [Rejection(T0, "tenants/acme/devices/x/events", b"{", "invalid_json", "d")]
        rejected.append(Rejection(T0, "t", b"x", "invalid_json", "d", account="acme"))
        result = await store.ingest(
            items, rejected, now=T0, owner="a", lease_until=T0 - 1, presence=POLICY, owners=owners
        )
        accounts = {(d.event.account, d.subscription, d.account) for d in result.deliveries}
        assert accounts == {
            ("acme", "ops", None),
            ("acme", "acme-hook", "acme"),
            ("globex", "ops", None),
            ("globex", "acme-hook", "acme"),
            (None, "ops", None),
            (None, "acme-hook", "acme"),
        }
        stored = await store.get_event("evt_acct_2")
        assert stored is not None and stored.account == "globex"
        fetched = await store.get_delivery(result.deliveries[1].id)
        assert fetched is not None and fetched.account == "acme"
        assert [r.account for r in await store.list_rejected(limit=5)] == ["acme", None]

        page, _ = await store.list_devices(state=None, prefix=None, cursor=None, limit=10)
        assert [(d.device_id, d.account) for d in page] == [
            ("shared", None),
            ("shared", "acme"),
            ("shared", "globex"),
        ]
        for limit in (1, 2):  # the cursor keeps the account: nothing skipped, nothing twice
            found, cursor = [], None
            for _ in range(5):
                part, cursor = await store.list_devices(
                    state=Presence.ONLINE, prefix="sh", cursor=cursor, limit=limit
                )
                found += [d.account for d in part]
                if cursor is None:
                    break
            assert found == [None, "acme", "globex"]
        mine, _ = await store.list_devices(
            state=None, prefix=None, cursor=None, limit=10, account="acme"
        )
        assert [(d.device_id, d.account) for d in mine] == [("shared", "acme")]
        none, _ = await store.list_devices(
            state=None, prefix=None, cursor=None, limit=10, account=""
        )
        assert [d.account for d in none] == [None]
        detail = await store.get_device("shared", events=5, account="globex")
        assert detail is not None and [e.event.id for e in detail.events] == ["evt_acct_2"]
        only = await store.get_device("shared", events=5, account="globex", deliveries_of="acme")
        assert only is not None
        assert [x.subscription for x in only.events[0].deliveries] == ["acme-hook"]
        assert await store.get_device("shared", events=5, account="nobody") is None
        presence = await store.get_presence("shared", "acme")
        assert presence is not None and presence.account == "acme"

        assert await store.forget_device("shared", "acme")
        assert await store.get_device("shared", events=5, account="acme") is None
        assert await store.get_presence("shared", "acme") is None
        assert await store.get_device("shared", events=5, account="globex") is not None
        assert await store.get_device("shared", events=5) is not None

        theirs, _ = await store.list_deliveries(
            subscription=None,
            status=None,
            since=None,
            until=None,
            cursor=None,
            limit=10,
            account="acme",
        )
        assert {d.subscription for d in theirs} == {"acme-hook"} and len(theirs) == 3

    async def test_managed_subscriptions_keep_names_limits_and_revisions(
        self, store: Store
    ) -> None:
        start = await store.managed_version()
        assert await store.create_account("acme", now=T0, audit=_note("account.created", "acme"))
        assert not await store.create_account("acme", now=T0, audit=_note("x", "acme"))
        made = await store.create_subscription(
            _row("one", "acme"), reserved=["crm"], limit=1, audit=_note("c", "one", "acme")
        )
        assert made is Created.CREATED
        for row, reserved, limit, expected in (
            (_row("crm"), ["crm"], None, Created.TAKEN),
            (_row("one"), [], None, Created.TAKEN),
            (_row("two", "acme"), [], 1, Created.LIMIT),
            (_row("two", "nobody"), [], 5, Created.NO_ACCOUNT),
        ):
            found = await store.create_subscription(
                row, reserved=reserved, limit=limit, audit=_note("c", row.name)
            )
            assert found is expected, row
        assert (
            await store.create_subscription(
                _row("ops"), reserved=[], limit=None, audit=_note("c", "ops")
            )
            is Created.CREATED
        )
        assert await store.managed_version() == start + 2
        (one, ops) = await store.stored_subscriptions()
        assert (one.name, one.account, one.revision, one.sealed) == (
            "one",
            "acme",
            1,
            b"sealed-bytes",
        )
        assert (ops.name, ops.account) == ("ops", "")

        spec = {"name": "one", "url": "https://y.example/hook"}
        change = SubscriptionUpdate("one", 1, spec, None, T0 + 1, _note("u", "one", "acme"))
        assert await store.update_subscription(change) == (Updated.UPDATED, 2)
        assert await store.update_subscription(change) == (Updated.STALE, 2)
        gone = SubscriptionUpdate("nope", 1, spec, None, T0, _note("u", "nope"))
        assert await store.update_subscription(gone) == (Updated.GONE, 0)
        (one, _) = await store.stored_subscriptions()
        assert (one.spec, one.sealed, one.revision) == (spec, None, 2)

        # A delete ends the pending deliveries dead; the name stays reserved.
        event = _event(9, "d1", "acme")
        result = await store.ingest(
            [Accepted(event, ("one",), T0)],
            [],
            now=T0,
            owner="a",
            lease_until=T0 + 300,
            owners={"one": "acme"},
        )
        assert await store.delete_subscription("one", now=T0 + 2, audit=_note("d", "one")) == 1
        assert await store.delete_subscription("one", now=T0 + 2, audit=_note("d", "one")) is None
        ended = await store.get_delivery(result.deliveries[0].id)
        assert ended is not None
        assert (ended.status, ended.dead_reason) == (DeliveryStatus.DEAD, "deleted")
        assert (
            await store.create_subscription(
                _row("one", "acme"), reserved=[], limit=5, audit=_note("c", "one")
            )
            is Created.TAKEN
        )
        # Freed when retention frees it (its deliveries are gone by then).
        assert await store.purge_history(audit_before=T0, retired_before=T0 + 3) == 1
        assert (
            await store.create_subscription(
                _row("one", "acme"), reserved=[], limit=5, audit=_note("c", "one")
            )
            is Created.CREATED
        )

        await store.reseal_subscriptions([("one", b"sealed-again")])
        version = await store.managed_version()
        assert {r.name: r.sealed for r in await store.stored_subscriptions()}[
            "one"
        ] == b"sealed-again"
        assert await store.managed_version() == version  # nothing anyone must re-apply

        # An account goes with its subscriptions (their deliveries end) and tokens.
        assert await store.create_token(
            "acme", "tok_1", "digest-1", now=T0, audit=_note("t", "tok_1")
        )
        assert await store.delete_account("acme", now=T0, audit=_note("a", "acme")) == ["one"]
        assert await store.delete_account("acme", now=T0, audit=_note("a", "acme")) is None
        assert [r.name for r in await store.stored_subscriptions()] == ["ops"]
        assert await store.token_owner("digest-1") is None
        assert await store.managed_version() == version + 1

    async def test_tokens_are_found_by_digest_and_revoked_at_once(self, store: Store) -> None:
        await store.create_account("acme", now=T0, audit=_note("a", "acme"))
        assert not await store.create_token("nobody", "tok_0", "d0", now=T0, audit=_note("t", "x"))
        assert await store.create_token("acme", "tok_1", "d1", now=T0, audit=_note("t", "tok_1"))
        assert await store.create_token("acme", "tok_2", "d2", now=T0, audit=_note("t", "tok_2"))
        found = await store.token_owner("d2")
        assert found is not None and (found.id, found.account) == ("tok_2", "acme")
        assert [t.id for t in await store.list_tokens("acme") or []] == ["tok_1", "tok_2"]
        assert await store.list_tokens("nobody") is None
        assert await store.revoke_token("acme", "tok_2", audit=_note("r", "tok_2"))
        assert not await store.revoke_token("acme", "tok_2", audit=_note("r", "tok_2"))
        assert await store.token_owner("d2") is None
        accounts = await store.list_accounts()
        assert [(a.id, a.subscriptions, a.tokens) for a in accounts] == [("acme", 0, 1)]

    async def test_the_audit_trail_pages_newest_first_by_account_and_is_purged(
        self, store: Store
    ) -> None:
        for n in range(5):
            account = "acme" if n % 2 == 0 else "globex"
            await store.create_account(f"a{n}", now=T0, audit=_note("a", f"a{n}", account, T0 + n))
        entries, cursor = await store.list_audit(account=None, cursor=None, limit=2)
        assert [e.note.target for e in entries] == ["a4", "a3"] and cursor is not None
        entries, cursor = await store.list_audit(account=None, cursor=cursor, limit=10)
        assert [e.note.target for e in entries] == ["a2", "a1", "a0"] and cursor is None
        entries, _ = await store.list_audit(account="acme", cursor=None, limit=10)
        assert [e.note.target for e in entries] == ["a4", "a2", "a0"]
        assert entries[0].note.changes == {"k": "v"}
        with pytest.raises(StoreError):
            await store.list_audit(account=None, cursor="garbage!", limit=5)
        assert await store.purge_history(audit_before=T0 + 2, retired_before=0) == 2
        entries, _ = await store.list_audit(account=None, cursor=None, limit=10)
        assert [e.note.target for e in entries] == ["a4", "a3", "a2"]
