"""Where a long demo run is: `[k/N] stage` lines with an overall estimate, and per-stage
times that stay true across interruptions and resumes."""
from __future__ import annotations

import contextlib
import json
import pathlib
import platform
import sys
import time


def cpu_name() -> str:
    """The processor's model name (e.g. "AMD EPYC"), for labelling timings."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Timings:
    """Seconds of real work per step, kept in a JSON file: a step run over several
    processes (interrupted, then resumed) adds up the time each process spent on it."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.seconds: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def add(self, name: str, seconds: float) -> None:
        """Count `seconds` more for `name` and save."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.seconds, indent=2) + "\n")
        tmp.replace(self.path)


class Plan:
    """The run's steps with rough relative costs; `step(name)` times one and announces it."""

    def __init__(self, steps: list[tuple[str, float]], timings: Timings, stream=None):
        self.names = [name for name, _ in steps]
        self.cost = dict(steps)
        self.timings = timings
        self.stream = stream or sys.stderr
        self._cost_done = 0.0
        self._seconds_done = 0.0
        self._finished: set[str] = set()

    def label(self, name: str) -> str:
        """`[k/N] name`, for a progress bar."""
        return f"[{self.names.index(name) + 1}/{len(self.names)}] {name}"

    def _remaining(self, name: str) -> str:
        if self._cost_done <= 0:
            return ""
        rate = self._seconds_done / self._cost_done
        left = sum(self.cost[n] for n in self.names[self.names.index(name):] if n not in self._finished)
        return f", about {left * rate / 60:.0f} min left"

    @contextlib.contextmanager
    def step(self, name: str, done: bool = False):
        """Time the body as step `name` (`done`: finished by an earlier run, only announced)."""
        if done:
            self._finished.add(name)
            print(f"{self.label(name)}: finished earlier", file=self.stream, flush=True)
            yield
            return
        print(f"{self.label(name)}{self._remaining(name)}", file=self.stream, flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            self.timings.add(name, spent)
        self._finished.add(name)
        self._cost_done += self.cost[name]
        self._seconds_done += spent
