"""The adaptive in-flight limit, end to end: real broker, real bridge, real receivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import bridge_config, crm_subscription, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver, receiving
from tests.support.waiting import wait_until

OLD_FIXED_LIMIT = 16  # max_in_flight's default before the limit adapted


def _events(count: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"devices/dev-{n % 20}/events", {"type": "session.started", "id": f"m-{n}"})
        for n in range(count)
    ]


def _peak_concurrency(arrivals: list[float], delay: float) -> int:
    """Requests being answered at once: each is open from its arrival for ``delay``."""
    return max(sum(1 for b in arrivals if b <= a < b + delay) for a in arrivals)


async def test_a_slow_healthy_receiver_gets_more_parallelism_than_the_old_fixed_limit(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    delay = 0.2
    async with receiving(lambda _r, _n: Answer(200, delay=delay)) as receiver:
        # Default max_in_flight: the limit starts small and grows while answers stay healthy.
        sub = crm_subscription(receiver)
        async with running_bridge(bridge_config(mosquitto, tmp_path, [sub])):
            with Publisher(mosquitto.port) as device:
                device.publish_all(_events(600))
                await wait_until(lambda: len(receiver.unique_ids()) >= 600, timeout=60)
        peak = _peak_concurrency([r.at for r in receiver.requests], delay)
        assert peak > OLD_FIXED_LIMIT, peak
        assert len(receiver.peers) <= 256  # the cap bounds the connections


async def test_the_cap_is_max_in_flight(mosquitto: Mosquitto, tmp_path: Path) -> None:
    delay = 0.1
    async with receiving(lambda _r, _n: Answer(200, delay=delay)) as receiver:
        sub = crm_subscription(receiver, max_in_flight=3)
        async with running_bridge(bridge_config(mosquitto, tmp_path, [sub])):
            with Publisher(mosquitto.port) as device:
                device.publish_all(_events(60))
                await wait_until(lambda: len(receiver.unique_ids()) >= 60, timeout=60)
        assert len(receiver.peers) <= 3


async def test_a_429_pauses_the_whole_lane_for_retry_after(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """After a 429 with Retry-After: 1 no other delivery of that subscription goes out early."""
    receiver = Receiver(
        lambda _r, n: Answer(429, headers={"Retry-After": "1"}) if n == 0 else Answer(200)
    )
    await receiver.start()
    try:
        sub = crm_subscription(receiver)
        async with running_bridge(bridge_config(mosquitto, tmp_path, [sub])):
            with Publisher(mosquitto.port) as device:
                device.publish_all(_events(1))
                await wait_until(lambda: len(receiver.requests) >= 1, timeout=15)
                device.publish_all(_events(3)[1:])  # other events, not retries of the first
                await wait_until(lambda: len(receiver.unique_ids()) >= 3, timeout=15)
        first, second = receiver.requests[0], receiver.requests[1]
        gap = second.at - first.at
        assert gap >= 0.9, f"the lane sent again {gap:.3f}s after a 429 asking for 1 s"
    finally:
        await receiver.stop()
