"""The dispatcher: from stored deliveries to HTTP attempts, one lane per subscription.

Each subscription has a :class:`Lane` with its own lease book, its own
in-flight limit and rate limit, so a slow or dead endpoint never delays
another. The in-flight limit adapts to the receiver
(:mod:`bridge.core.concurrency`, with ``max_in_flight`` as its cap). New
deliveries are handed over in memory right after their commit (already
leased to us in the store); the store is asked for due deliveries only when a
retry falls due, when something was released or requeued, and on a slow
fallback poll (deliveries of a killed instance whose lease ran out).

The dispatcher holds small collaborators and drives the lanes with them:

- each lane's :class:`~bridge.delivery.book.LeaseBook`, the one owner of what
  the lane holds;
- a sending strategy per lane, single or batch (:mod:`bridge.delivery.strategy`);
- :class:`~bridge.delivery.attempts.Attempts`, which runs and settles attempts;
- :class:`~bridge.delivery.health.Health`, which puts what a result teaches
  (limits, circuit, streak, disabling) into effect;
- the :class:`~bridge.delivery.recorder.Recorder`, which writes results back
  in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Collection, Sequence

from bridge.config import Settings, Subscription
from bridge.delivery.attempts import AfterDelivery, Attempts
from bridge.delivery.batching import BatchSending
from bridge.delivery.health import Alert, Health
from bridge.delivery.lane import ERROR_PAUSE, STATE_REFRESH, Lane
from bridge.delivery.recorder import Recorder
from bridge.delivery.send import Sender
from bridge.delivery.strategy import Sending, SingleSending
from bridge.errors import StoreError
from bridge.observe.logs import get_logger
from bridge.observe.metrics import Metrics
from bridge.store.base import Store
from bridge.store.rows import Delivery, SubscriptionState

__all__ = ["AfterDelivery", "Alert", "Dispatcher", "Lane"]

log = get_logger("hookbridge.dispatch")


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        sender: Sender,
        *,
        owner: str,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        alert: Alert | None = None,
        after_delivery: AfterDelivery | None = None,
        replies_committed: Callable[[], None] | None = None,
        state_refresh: float = STATE_REFRESH,
    ) -> None:
        self._settings = settings
        self._store = store
        self._owner = owner
        self._metrics = metrics
        self._clock = clock
        self.lanes: dict[str, Lane] = {}
        self._prepared = False
        self._state_refresh = state_refresh
        self._states_at = 0.0  # when the lanes read the stored states next
        self._recorder = Recorder(
            store, settled=self._settled, clock=clock, replies_committed=replies_committed
        )
        self.health = Health(store=store, metrics=metrics, alert=alert, disable=self.set_disabled)
        self._attempts = Attempts(
            settings,
            sender=sender,
            recorder=self._recorder,
            health=self.health,
            clock=clock,
            rand=rand,
            after_delivery=after_delivery,
        )
        self._single = SingleSending(self._attempts)
        self._batches = BatchSending(self._attempts, store)

    # -- public -------------------------------------------------------------------

    async def prepare(self) -> None:
        """Build the lanes from the stored subscription states. Done before ingest starts,
        so the first deliveries it hands over find their lanes."""
        states = await self._store.subscription_states()
        self._prepared = True
        for sub in self._settings.subscriptions:
            self.lanes[sub.name] = self._lane(sub, states)
            self._metrics.subscription_disabled.labels(sub.name).set(
                1 if self.lanes[sub.name].paused else 0
            )

    async def run(self) -> None:
        if not self._prepared:
            await self.prepare()
        async with asyncio.TaskGroup() as group:
            self._attempts.group = group
            group.create_task(self._recorder.run(), name="attempt-recorder")
            for lane in self.lanes.values():
                group.create_task(self._drive(lane), name=f"lane-{lane.name}")

    def offer(
        self, deliveries: Sequence[Delivery], heads: Collection[str] = frozenset()
    ) -> list[str]:
        """Take freshly committed deliveries; returns the ids it could not take now.

        An ordered lane takes only ``heads``: deliveries the store found first in
        their device's queue. The caller releases the rest in the store, where the
        lane's next poll finds them.
        """
        overflow: list[str] = []
        now = self._clock()
        for delivery in deliveries:
            lane = self.lanes.get(delivery.subscription)
            if (
                lane is None
                or self._attempts.stopping
                or not lane.takes_offers(now)
                or (lane.subscription.ordered and delivery.id not in heads)
            ):
                overflow.append(delivery.id)
                if lane is not None:
                    lane.poll_at = 0.0
                continue
            lane.book.offer(delivery)
            lane.wake.set()
        return overflow

    def paused(self) -> list[str]:
        """The subscriptions whose queue does not age now (disabled, or not enabled)."""
        return [lane.name for lane in self.lanes.values() if lane.paused]

    def poke(self, subscription: str | None = None) -> None:
        """Something changed in the store (requeue, replay, release): look now."""
        for lane in self.lanes.values():
            if subscription is None or lane.name == subscription:
                lane.poll_at = 0.0
                lane.wake.set()

    async def set_disabled(self, name: str, disabled: bool, reason: str | None) -> bool:
        lane = self.lanes.get(name)
        if lane is None:
            return False
        now = self._clock()
        paused_for = lane.paused_for(now)
        if not disabled and paused_for is not None:
            # The queue's clock stopped while disabled (see Store.resume_age).
            await self._store.resume_age(name, paused_for=paused_for)
        lane.set_disabled(disabled, reason, now)
        self._metrics.subscription_disabled.labels(name).set(1 if disabled else 0)
        if disabled:
            await self._give_back(lane)
        self.poke(name)
        # In force in memory first; a store that refuses to keep it raises to the
        # caller, and the lane keeps trying to save it (see _drive). Enabling ends a
        # failing streak: what waited after endpoint-wide failures is sent at once.
        lane.unsaved = True
        if not disabled:
            lane.ending_streak = now
        await self.health.streak_end_saved(lane)
        await self._store.save_subscription_state(lane.state)
        lane.unsaved = False
        return True

    async def reconfigure(self, settings: Settings, states: dict[str, SubscriptionState]) -> None:
        """Adopt a reloaded configuration: lanes are added, updated or retired.

        ``states`` are the stored subscription states, read before anything
        switched (a reload reads everything first). A retired lane starts
        nothing new and hands what waits back to the store; attempts already in
        flight finish and are recorded as usual.
        """
        self._settings = settings
        self._attempts.settings = settings
        wanted = {s.name: s for s in settings.subscriptions}
        for name in [n for n in self.lanes if n not in wanted]:
            retired = self.lanes.pop(name)
            retired.closed = True
            retired.wake.set()
        group = self._attempts.group
        for name, sub in wanted.items():
            found = self.lanes.get(name)
            if found is None:
                lane = self.lanes[name] = self._lane(sub, states)
                if group is not None and not self._attempts.stopping:
                    group.create_task(self._drive(lane), name=f"lane-{name}")
            else:
                lane = found
                lane.update(sub, settings)
            if lane.paused:
                await self._give_back(lane)
            self._metrics.subscription_disabled.labels(name).set(1 if lane.paused else 0)

    async def stop(self, grace: float) -> None:
        """Stop starting attempts; let those in flight finish within ``grace``; release the rest."""
        self._attempts.stopping = True
        for lane in self.lanes.values():
            lane.wake.set()
        deadline = self._clock() + grace
        tasks = [t for lane in self.lanes.values() for t in lane.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, deadline - self._clock()))
        for task in tasks:
            task.cancel()
        for lane in self.lanes.values():
            await self._give_back(lane)
        self._recorder.finish()

    # -- lanes ---------------------------------------------------------------------

    def _lane(self, sub: Subscription, states: dict[str, SubscriptionState]) -> Lane:
        return Lane(
            sub,
            states.get(sub.name, SubscriptionState(sub.name)),
            self._metrics.for_lane(sub.name),
            disable_after=self._settings.retry.disable_after,
        )

    def _sending(self, lane: Lane) -> Sending:
        return self._batches if lane.subscription.batch is not None else self._single

    def _settled(self, ids: set[str]) -> None:
        """Results committed: their deliveries leave the lanes' books, which frees room."""
        for lane in self.lanes.values():
            freed = lane.book.settle(ids)
            if lane.subscription.ordered:
                # A settled delivery unblocks its device's next one.
                lane.poll_at = 0.0
                lane.wake.set()
            elif freed:
                lane.wake.set()  # room to claim what waits in the store

    async def _drive(self, lane: Lane) -> None:
        while not self._attempts.stopping and not lane.closed:
            lane.wake.clear()
            timeout = ERROR_PAUSE
            try:
                await self._step(lane)
                if lane.unsaved:
                    await self.health.save_state(lane)
                timeout = lane.idle_for(self._clock())
                await self._sleep(lane, timeout)
            except asyncio.CancelledError:
                if not _stray_cancel():
                    raise
                # Nobody asked this lane to stop (a library's stray cancel): a lane
                # that ends strands its subscription's queue, so it goes on.
                log.error(
                    "delivery lane cancelled without a stop; going on", subscription=lane.name
                )
            except Exception:
                # A lane that stops would strand its subscription's queue: log, wait, go on.
                log.exception("delivery lane step failed; trying again", subscription=lane.name)
                await self._sleep(lane, timeout)
        if lane.closed:  # removed by a reload: what it holds goes back to the store
            await self._give_back(lane)

    @staticmethod
    async def _sleep(lane: Lane, timeout: float) -> None:
        """Until something wakes the lane, or its timer is due.

        wait_for, not asyncio.timeout: on Python 3.11 a timer that fires in the
        loop turn the wake-up is set leaves a cancel pending on the task, and
        its next await raised it (the fault test of a DUP redelivery caught a
        lane ending so).
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lane.wake.wait(), timeout)

    async def _step(self, lane: Lane) -> None:
        """Claim and start what the lane may now; while it holds back, give back instead."""
        if lane.paused:
            return
        now = self._clock()
        await self._refresh_states(now)
        if lane.catching_up and now >= lane.catch_up_at:
            await self._catch_up(lane, now)
        if lane.holding_back(now):
            # The receiver does not take deliveries now (open circuit, Retry-After):
            # another instance whose path to it works may send what waits here.
            await self._give_back(lane)
            return
        if now >= lane.poll_at and lane.wants_more:
            await self._claim(lane, now)
        await self._sending(lane).start(lane)

    async def _claim(self, lane: Lane, now: float) -> None:
        room = lane.claim_room
        try:
            claimed = await self._store.claim_due(
                lane.name,
                now=now,
                owner=self._owner,
                lease_until=now + self._settings.store.lease,
                limit=room,
                ordered=lane.subscription.ordered,
                per_device=lane.run_length,
            )
            next_due = await self._store.next_due_at(lane.name, ordered=lane.subscription.ordered)
        except StoreError as exc:
            log.warning("cannot claim due deliveries", subscription=lane.name, error=str(exc))
            lane.poll_at = now + 1.0
            return
        lane.take(claimed, room=room, next_due=next_due, now=now)

    async def _refresh_states(self, now: float) -> None:
        """Every few seconds, what other instances stored (see Lane.refresh): one read."""
        if now < self._states_at:
            return
        self._states_at = now + self._state_refresh
        try:
            states = await self._store.subscription_states()
        except StoreError as exc:
            log.warning("cannot read subscription states", error=str(exc))
            return
        for name, stored in states.items():
            lane = self.lanes.get(name)
            if lane is not None:
                lane.refresh(stored)

    async def _catch_up(self, lane: Lane, now: float) -> None:
        """One chunk of the lane's catch-up: made due in the store, claimed as usual."""
        try:
            chunk = await self._store.catch_up(lane.name, now=now, after=lane.catch_up_cursor)
        except StoreError as exc:
            log.warning("cannot catch up yet", subscription=lane.name, error=str(exc))
            lane.catch_up_at = now + ERROR_PAUSE  # the mark stays: try again, gently
            return
        lane.catch_up_cursor = chunk.cursor
        if chunk.released:
            lane.caught_up += chunk.released
            self._metrics.caught_up.labels(lane.name).inc(chunk.released)
            lane.poll_at = 0.0  # claim them now
        if chunk.done:
            lane.catching_up = False
            if lane.caught_up:
                log.info("caught up", subscription=lane.name, deliveries=lane.caught_up)

    async def _give_back(self, lane: Lane) -> None:
        """What waits in the lane goes back to the store (its lease released)."""
        ids = lane.book.give_back_all()
        lane.gather_until = None
        if ids:
            with contextlib.suppress(StoreError):
                await self._store.release(ids)


def _stray_cancel() -> bool:
    """A CancelledError that no cancel() stands behind: stopping and a reload's
    removal of the lane both cancel through the task, which counts it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0
