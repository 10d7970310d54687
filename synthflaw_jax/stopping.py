"""Stopping a training run cleanly on SIGTERM (a preemption notice) or Ctrl-C.

A cloud scheduler that takes a machine back (a preemptible or spot VM, a TPU slice under
maintenance) first sends SIGTERM and kills the process some seconds later. Python's default
is to die at once, losing every step since the last scheduled checkpoint. Inside the
training loop `StopSignals` turns the first SIGTERM or SIGINT into a request: the step in
flight finishes, it is checkpointed (with the data position, so a rerun continues exactly),
and the run ends with `RunStopped`, which the CLI reports in one line and exits 128 + the
signal number (143 for SIGTERM, 130 for Ctrl-C). A second Ctrl-C interrupts at once.

On a multi-process job (`jax.distributed`), JAX's preemption service receives SIGTERM on
every host and `multihost_utils.reached_preemption_sync_point` names one step at which all
of them save; the hosts must agree, so there the decision is JAX's and no handler of ours is
installed.
"""
from __future__ import annotations

import signal
import sys
import threading

_HANDLED = (signal.SIGTERM, signal.SIGINT)


class RunStopped(Exception):
    """The run stopped early on a signal after checkpointing `step`; rerunning resumes it."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum
        super().__init__(f"stopped at step {step} on {signal.Signals(signum).name}: that step is checkpointed; "
                         "run the same command again to resume")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal."""
        return 128 + self.signum


class StopSignals:
    """While active (a `with` block in the main thread of a single-process run), the first
    SIGTERM or SIGINT is recorded instead of ending the process; the previous handlers come
    back on exit. `should_stop(step)` tells the loop, once per step, whether to save and stop."""

    def __init__(self, label: str = "synthflaw"):
        import jax

        self.label = label
        self.signum: int | None = None
        self._announced = False
        self._previous: dict[int, object] = {}
        self._multi_process = jax.process_count() > 1

    def __enter__(self) -> "StopSignals":
        if not self._multi_process and threading.current_thread() is threading.main_thread():
            for signum in _HANDLED:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:
        # only records: writing to stderr here could re-enter a write the main thread is in
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now, without the save
        if self.signum is None:
            self.signum = signum

    def should_stop(self, step: int) -> bool:
        """Whether the run should checkpoint `step` and stop. Call it once per step, on every
        host (on a multi-process job it is a synchronisation point of JAX's preemption service)."""
        if self._multi_process:
            from jax.experimental import multihost_utils

            try:
                reached = multihost_utils.reached_preemption_sync_point(step)
            except RuntimeError:  # the service is off (jax_enable_preemption_service=False)
                self._multi_process = False
                return self.should_stop(step)
            if reached:
                self.signum = signal.SIGTERM
                self._announce(step, "a host of this job got SIGTERM; every host is checkpointing")
            return reached
        if self.signum is not None:
            self._announce(step, f"{signal.Signals(self.signum).name} received; checkpointing")
        return self.signum is not None

    def _announce(self, step: int, what: str) -> None:
        if not self._announced:
            from tqdm.auto import tqdm

            self._announced = True
            tqdm.write(f"{self.label}: {what} step {step} and stopping (Ctrl-C again to stop at once)",
                       file=sys.stderr)  # above any progress bar
