"""Device presence: the pure state machine behind ``device.online`` / ``device.offline``.

Receivers want each transition of a device once and in order, not every
message that repeats what they already know. :func:`decide` takes what the
store knows about a device (:class:`PresenceState`, or None for a device never
seen) and one observation, and answers with the device's new state, the
synthetic transitions to emit *before* the observed event, and whether the
observed event itself is still news.

The rules, in one place:

* Every accepted event that names a device is an :class:`Observation`: the
  device was seen at ``at``. An event of type ``device.online`` /
  ``device.offline`` also *says* a state.
* A state that repeats the known one is collapsed: the event is kept in the
  store for inspection but delivered to nobody. A Last Will ``offline`` after
  a ``heartbeat_timeout`` offline is therefore not sent twice, nor an
  ``online`` while already online.
* Any other event from a device known to be offline first gives a synthetic
  ``device.online`` with ``reason: seen_again``.
* A device silent longer than its timeout (observation None: the scanner's
  clock check) goes offline with ``reason: heartbeat_timeout``, dated
  ``last_seen + timeout`` so every instance computes the same. The timeout is
  the one the device announced (``heartbeat``: set by an observation that
  carries one, cleared by a live ``online`` that carries none), else the caller's
  default; with neither (a device that signals presence with a retained status
  and a Last Will) the device stays online until it says ``offline``.
* A retained status message is the broker's memory, not news: for a device
  never seen it only sets the starting state. When it contradicts the stored
  state (after a restart of the bridge, the device dropped or came back while
  the bridge was away) it *is* the transition the receivers missed, and is
  delivered like a live one. Either way it does not count as a sign of life
  (``last_seen`` stays).
* The first live event of a device never seen (not a presence event) makes it
  online; with ``first_seen`` (``presence.announce_first_seen``, the default)
  a synthetic ``device.online`` (``reason: first_seen``) goes before it, so
  receivers learn of a new device as the directory does. A retained status
  only sets the starting state (see above), and a live ``online`` is its own
  announcement.

Pure: no clock, no I/O. The store runs :func:`decide` inside its ingest
transaction, so several instances sharing a store agree on every decision.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = [
    "CONNECTION_LOST",
    "FIRST_SEEN",
    "HEARTBEAT_TIMEOUT",
    "SEEN_AGAIN",
    "Decision",
    "Observation",
    "Presence",
    "PresenceState",
    "Transition",
    "decide",
    "presence_of",
    "timeout_of",
]

FIRST_SEEN = "first_seen"
HEARTBEAT_TIMEOUT = "heartbeat_timeout"
SEEN_AGAIN = "seen_again"
CONNECTION_LOST = "connection_lost"


class Presence(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


_BY_TYPE = {"device.online": Presence.ONLINE, "device.offline": Presence.OFFLINE}


def presence_of(event_type: str) -> Presence | None:
    """The state an event type states, if it is a presence event."""
    return _BY_TYPE.get(event_type)


@dataclass(frozen=True, slots=True)
class PresenceState:
    """What the store knows about one device."""

    device_id: str
    state: Presence
    last_seen: float  # epoch seconds of the latest message from the device
    changed_at: float  # when ``state`` began
    reason: str | None = None  # why it is in ``state``, when known
    heartbeat: float | None = None  # the silence it announced it never exceeds, seconds
    account: str = ""  # the device's account ("" for none): devices are keyed by both


@dataclass(frozen=True, slots=True)
class Observation:
    """A message from a device, seen at ``at``; ``says`` a state when it is a presence event."""

    device_id: str
    at: float
    says: Presence | None = None
    reason: str | None = None  # the event's own ``reason``
    retained: bool = False  # the broker's retained copy, not a live message
    heartbeat: float | None = None  # a timeout the message announces, seconds
    account: str = ""  # the device's account ("" for none)


@dataclass(frozen=True, slots=True)
class Transition:
    """A synthetic presence event to emit."""

    device_id: str
    state: Presence
    reason: str
    changed_at: float
    last_seen: float
    account: str = ""  # the device's account ("" for none); its event belongs to it

    @property
    def key(self) -> str:
        """Names the transition for its stable event id: the same on every instance."""
        return f"presence:{self.state.value}:{self.changed_at!r}"


@dataclass(frozen=True, slots=True)
class Decision:
    state: PresenceState | None  # the state to keep (None: still unknown)
    emit: tuple[Transition, ...] = ()  # synthetic events, before the observed one
    keep_event: bool = True  # False: the observed event repeats the known state


def decide(
    previous: PresenceState | None,
    observation: Observation | None,
    now: float,
    offline_after: float | None,
    *,
    first_seen: bool = False,
) -> Decision:
    """The next presence state of a device; ``observation`` None is the timeout check at ``now``.

    ``offline_after`` is the timeout of a device that announced none (None: it has none).
    ``first_seen``: a device's first live event announces it (``presence.announce_first_seen``).
    """
    if observation is None:
        return _check_timeout(previous, now, offline_after)
    device = observation.device_id
    account = observation.account
    at = observation.at
    # A retained copy is the broker's memory, not a sign of life now.
    seen = (
        at
        if previous is None
        else previous.last_seen
        if observation.retained
        else max(at, previous.last_seen)
    )
    says = observation.says
    heartbeat = _heartbeat(previous, observation)
    if previous is None:
        return _first_sight(observation, seen, heartbeat, first_seen=first_seen)
    if says is None:
        if previous.state is Presence.ONLINE:
            return Decision(replace(previous, last_seen=seen, heartbeat=heartbeat))
        back = Transition(device, Presence.ONLINE, SEEN_AGAIN, at, seen, account)
        return Decision(
            PresenceState(device, Presence.ONLINE, seen, at, SEEN_AGAIN, heartbeat, account),
            (back,),
        )
    if says is previous.state:
        return Decision(replace(previous, last_seen=seen, heartbeat=heartbeat), keep_event=False)
    # A change. A retained one contradicts what we stored: it happened while we were away.
    return Decision(PresenceState(device, says, seen, at, observation.reason, heartbeat, account))


def _first_sight(
    observation: Observation, seen: float, heartbeat: float | None, *, first_seen: bool
) -> Decision:
    """The starting state: from a retained status it is no news; a live presence event
    is; any other event makes the device known, and online (announced with
    ``first_seen``)."""
    device, at, says = observation.device_id, observation.at, observation.says
    account = observation.account
    if says is None and first_seen and not observation.retained:
        first = Transition(device, Presence.ONLINE, FIRST_SEEN, at, seen, account)
        state = PresenceState(device, Presence.ONLINE, seen, at, FIRST_SEEN, heartbeat, account)
        return Decision(state, (first,))
    state = PresenceState(
        device, says or Presence.ONLINE, seen, at, observation.reason, heartbeat, account
    )
    return Decision(state, keep_event=says is None or not observation.retained)


def _heartbeat(previous: PresenceState | None, observation: Observation) -> float | None:
    """The timeout a device keeps: the one it announces now; a live ``online`` without
    one clears it (a new connection says how it signals presence); otherwise the
    known one (a retained copy is old news, and may be an older status)."""
    live_online = observation.says is Presence.ONLINE and not observation.retained
    if observation.heartbeat is not None or live_online:
        return observation.heartbeat
    return None if previous is None else previous.heartbeat


def timeout_of(state: PresenceState, offline_after: float | None) -> float | None:
    """The silence after which ``state``'s device goes offline; None: never."""
    return state.heartbeat if state.heartbeat is not None else offline_after


def _check_timeout(
    previous: PresenceState | None, now: float, offline_after: float | None
) -> Decision:
    timeout = None if previous is None else timeout_of(previous, offline_after)
    if (
        previous is None
        or timeout is None
        or previous.state is Presence.OFFLINE
        or now - previous.last_seen <= timeout
    ):
        return Decision(previous, keep_event=False)
    changed = previous.last_seen + timeout
    gone = Transition(
        previous.device_id,
        Presence.OFFLINE,
        HEARTBEAT_TIMEOUT,
        changed,
        previous.last_seen,
        previous.account,
    )
    state = PresenceState(
        previous.device_id,
        Presence.OFFLINE,
        previous.last_seen,
        changed,
        HEARTBEAT_TIMEOUT,
        previous.heartbeat,
        previous.account,
    )
    return Decision(state, (gone,), keep_event=False)
