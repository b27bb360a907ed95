"""A py-spy raw profile, summarised for bench/RESULTS.md: where the CPU time goes.

py-spy's raw format is one line per distinct stack, ``frame;frame;... count``,
each frame ``function (path:line)``, outermost first. Idle threads are not
sampled, so the counts follow CPU time. The summary groups samples by the
module of the innermost frame (self time) and counts HookBridge's own
functions wherever they appear on a stack (inclusive time).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

__all__ = ["summarise"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")


# Innermost frames where a thread waits rather than works. py-spy's own idle
# detection does not work everywhere (containers), so waits are dropped here.
_WAITS = {
    "select",
    "EpollSelector.select",
    "_worker",
    "wait",
    "Condition.wait",
    "Event.wait",
    "sleep",
    "Thread._wait_for_tstate_lock",
}


def _module(path: str) -> str:
    """A short name for where a frame's code lives (py-spy shortens paths to a package)."""
    path = path.replace("\\", "/")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    if path.startswith("bridge/") or "/bridge/" in path:
        tail = path.rsplit("bridge/", 1)[1]
        return "bridge." + tail.removesuffix(".py").replace("/", ".")
    head = path.split("/", 1)[0].removesuffix(".py")
    return head or "?"


def _frames(stack: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame.strip())
        if match is not None:
            out.append((match["func"], match["path"]))
    return out


def summarise(raw: Path, *, top: int = 12) -> str:
    """Markdown: total samples, self time by module, inclusive time of bridge functions."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        if not frames or frames[-1][0] in _WAITS:
            continue
        total += count
        self_time[_module(frames[-1][1])] += count
        seen = {
            f"{_module(path)}.{func}"
            for func, path in frames
            if _module(path).startswith("bridge") and not _module(path).startswith("bridge.cli")
        }
        for name in seen:
            inclusive[name] += count
    if total == 0:
        return "py-spy profile: no samples"
    lines = [f"py-spy profile of HookBridge ({total:,} samples not waiting, all threads):", ""]
    lines += ["| self time by module | share |", "|---|---|"]
    lines += [f"| {name} | {n / total:.0%} |" for name, n in self_time.most_common(top)]
    lines += ["", "| HookBridge function (inclusive) | share |", "|---|---|"]
    lines += [f"| {name} | {n / total:.0%} |" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)
