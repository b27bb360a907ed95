"""Resource use of the bridge under test: peak RSS sampled every 100 ms, CPU seconds.

The process tree is measured (the peer and any children it starts), so a
peer that forks workers is charged for them.
"""

from __future__ import annotations

import threading

import psutil

INTERVAL = 0.1


class Monitor:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self.samples: list[int] = []  # RSS over time, for "flat" judgements
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self.cpu_at_start = 0.0
        self.io_at_start: dict[str, int] = {}

    def __enter__(self) -> Monitor:
        # Start-up (imports, npm modules) is not the work being measured.
        self.cpu_at_start = self.cpu_seconds()
        self.io_at_start = self.io_counts()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return []

    def _sample(self) -> None:
        # Bounded by the run: the runner stops it; a lost process ends it too.
        while not self._stop.wait(INTERVAL):
            rss = 0
            for proc in self._tree():
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
            if rss == 0:
                return
            self.peak_rss = max(self.peak_rss, rss)
            self.samples.append(rss)

    def cpu_used(self) -> float:
        """CPU seconds since the monitor started (read before the process stops)."""
        return self.cpu_seconds() - self.cpu_at_start

    def cpu_seconds(self) -> float:
        """User + system seconds of the tree so far."""
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system + times.children_user + times.children_system
        return total

    def io_counts(self) -> dict[str, int]:
        """System calls and bytes of the tree so far: reads, writes, bytes written, and
        the times it waited (voluntary context switches). Counts, unlike CPU seconds,
        hardly move with what else the machine is doing."""
        totals = {"reads": 0, "writes": 0, "written": 0, "waits": 0}
        for proc in self._tree():
            try:
                io = proc.io_counters()
                switches = proc.num_ctx_switches()
            except (psutil.Error, AttributeError):
                continue
            totals["reads"] += io.read_count
            totals["writes"] += io.write_count
            totals["written"] += getattr(io, "write_chars", io.write_bytes)
            totals["waits"] += switches.voluntary
        return totals

    def io_used(self) -> dict[str, int]:
        """What :meth:`io_counts` counted since the monitor started."""
        now = self.io_counts()
        return {key: now[key] - self.io_at_start.get(key, 0) for key in now}
