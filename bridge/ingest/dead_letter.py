"""The last resort for what the store refuses for good: a local dead-letter file.

An event the store refuses (deterministically, for that one event) is kept as
a quarantined rejection instead. When even that write keeps failing for the
same item, the batch is not acknowledged and is tried again; after
``tries`` failures of the same item it is appended here as one JSON line
(kept beside a SQLite store, or where ``store.dead_letter_file`` says), an
alert goes out, and only then is the message acknowledged. Nothing else is
ever acknowledged without a commit.
"""

from __future__ import annotations

import base64
import os
from collections import OrderedDict
from pathlib import Path

import orjson

from bridge.config import StoreSettings
from bridge.errors import StoreError

__all__ = ["DEAD_LETTER_NAME", "DeadLetters", "dead_letter_path"]

DEAD_LETTER_NAME = "hookbridge-dead-letter.jsonl"
_TRIES = 5
_REMEMBERED = 10_000  # items whose failures are counted at once (oldest forgotten first)


def dead_letter_path(settings: StoreSettings) -> Path:
    """Where the dead-letter file goes: the setting, else beside a SQLite file, else here."""
    if settings.dead_letter_file:
        return Path(settings.dead_letter_file)
    if settings.url.startswith("sqlite:///"):
        return Path(settings.url[len("sqlite:///") :]).parent / DEAD_LETTER_NAME
    return Path(DEAD_LETTER_NAME)


class DeadLetters:
    """Counts refusals per item and writes an item out once it has used its tries."""

    def __init__(self, path: Path, *, tries: int = _TRIES) -> None:
        self.path = path
        self.tries = tries
        self._failures: OrderedDict[str, int] = OrderedDict()

    def refused(self, key: str) -> bool:
        """Count one more refusal of ``key``; True once it has had all its tries."""
        count = self._failures.pop(key, 0) + 1
        self._failures[key] = count
        while len(self._failures) > _REMEMBERED:
            self._failures.popitem(last=False)
        return count >= self.tries

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def write(self, key: str, record: dict[str, object], payload: bytes) -> None:
        """Append one item (payload base64) and make it durable before the caller acks."""
        line = orjson.dumps(
            {**record, "key": key, "payload_b64": base64.b64encode(payload).decode("ascii")}
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as out:
                out.write(line + b"\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise StoreError(f"cannot write the dead-letter file: {exc}") from exc
        self.forget(key)
