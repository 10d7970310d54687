"""Training checkpoints with Orbax's CheckpointManager: async saves, keep-last-K, exact resume.

Each step directory holds the train state (params, optimizer state, step, RNG) and the data
iterator state (JSON). Orbax commits a step atomically (temporary directory + rename), so an
interrupted save never shows up as a step; a committed step that fails to restore (damaged
files) is moved aside to `damaged-step-<N>` (kept for inspection, never deleted) with a
warning, in favour of the one before it.

The directory may be local or a bucket (`gs://...`): Orbax and `etils.epath` handle both.
On a multi-host job every process calls `save`/`restore_latest` at the same steps; Orbax
writes each host's shards of the arrays, and the data state (one per host: each reads its
own share of the records) is gathered so the step's JSON holds every host's position.
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from synthflaw_jax import runtime

log = logging.getLogger(__name__)


class TrainCheckpointer:
    """Saves and restores (train state, data state) under `directory/<step>/`."""

    def __init__(self, directory: str | pathlib.Path, every: int, keep: int, async_save: bool = True):
        self.directory = (runtime.as_path(directory) if runtime.is_remote(directory)
                          else pathlib.Path(directory).absolute())
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=max(int(every), 1),
            max_to_keep=max(int(keep), 1),
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,  # a save cut short (kill, full disk) leaves a tmp dir behind
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self.failed = False

    def steps(self) -> list[int]:
        """Committed steps, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, data_state: dict[str, Any], force: bool = False) -> bool:
        """Save if `step` is on the interval (or `force`); returns whether a save started.
        A failed write (this one or the previous async one: full disk, size limit) raises one
        SynthflawError; the committed steps before it are untouched."""
        try:
            return self.manager.save(
                int(step),
                args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                        data=ocp.args.JsonSave(_gather_data_state(data_state))),
                force=force,
            )
        except Exception as err:
            raise self._write_failed(err) from None

    def restore_latest(self, abstract_state) -> tuple[int, Any, dict] | None:
        """(step, state, data_state) of the newest step that restores; None when there is none."""
        for step in reversed(self.steps()):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
                    ),
                )
            except Exception as err:  # a damaged step: Orbax/TensorStore raise many types
                aside = self.directory / f"damaged-step-{step}"
                log.warning("checkpoint step %d in %s cannot be restored (%s); moved it to %s and trying "
                            "the previous one", step, self.directory, " ".join(str(err).split())[:200], aside.name)
                if runtime.is_main():
                    (self.directory / str(step)).rename(aside)
                runtime.barrier(f"synthflaw-damaged-{step}")
                self.manager.reload()
                continue
            return step, restored.state, _own_data_state(restored.data)
        return None

    def wait(self) -> None:
        """Block until pending async saves are committed."""
        try:
            self.manager.wait_until_finished()
        except Exception as err:
            raise self._write_failed(err) from None

    def close(self) -> None:
        """Finish pending saves and release the manager (after a failed save, quietly)."""
        try:
            self.wait()
        except _AlreadyReported:
            pass
        finally:
            try:
                self.manager.close()
            except Exception:
                if not self.failed:
                    raise

    def _write_failed(self, err: Exception) -> Exception:
        """The error to raise for a failed save: one line for a full disk or a size limit."""
        from synthflaw_jax import outputs

        if self.failed:  # reported once already; the manager repeats it on every later call
            return _AlreadyReported()
        self.failed = True
        steps = self.steps()
        kept = f"the last complete checkpoint (step {steps[-1]}) is intact" if steps else "no step was saved"
        friendly = outputs.write_error(self.directory, err, "checkpoint")
        if friendly is None:
            return err
        return type(friendly)(f"{friendly.args[0].split('; ')[0]}; {kept}")


class _AlreadyReported(Exception):
    """A repeat of a save failure that was already raised (swallowed by `close`)."""


_PER_PROCESS = "per_process"


def _gather_data_state(data_state: dict) -> dict:
    """One process: the data state as is. Several: {"per_process": [state of process 0, 1, ...]},
    the same on every process (the states are small trees of ints, gathered exactly as int64)."""
    if jax.process_count() == 1:
        return data_state
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree.flatten(data_state)
    local = np.asarray([int(x) for x in leaves], np.int64).view(np.int32)  # x64 is off: ship as int32 pairs
    gathered = np.asarray(multihost_utils.process_allgather(local)).reshape(jax.process_count(), -1)
    per_process = [jax.tree.unflatten(treedef, [int(v) for v in row.view(np.int64)]) for row in gathered]
    return {_PER_PROCESS: per_process}


def _own_data_state(data_state: dict) -> dict:
    """This process's entry of a gathered data state (a single-process state is returned as is;
    a count mismatch is left to the pipeline's identity check)."""
    if isinstance(data_state, dict) and _PER_PROCESS in data_state:
        states = data_state[_PER_PROCESS]
        if isinstance(states, dict):  # JSON keeps lists, but accept {"0": ...} too
            states = [states[k] for k in sorted(states, key=int)]
        return states[min(jax.process_index(), len(states) - 1)]
    return data_state
