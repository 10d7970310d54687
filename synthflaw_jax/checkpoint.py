"""Training checkpoints with Orbax's CheckpointManager: async saves, keep-last-K, exact resume.

Each step directory holds the train state (params, optimizer state, step, RNG) and the data
iterator state (JSON). Orbax commits a step atomically (temporary directory + rename), so an
interrupted save never shows up as a step; a committed step that fails to restore (damaged
files) is moved aside to `damaged-step-<N>` (kept for inspection, never deleted) with a
warning, in favour of the one before it.
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any

import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class TrainCheckpointer:
    """Saves and restores (train state, data state) under `directory/<step>/`."""

    def __init__(self, directory: str | pathlib.Path, every: int, keep: int, async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=max(int(every), 1),
            max_to_keep=max(int(keep), 1),
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """Committed steps, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, data_state: dict[str, Any], force: bool = False) -> bool:
        """Save if `step` is on the interval (or `force`); returns whether a save started."""
        return self.manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)),
            force=force,
        )

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
                (self.directory / str(step)).rename(aside)
                self.manager.reload()
                continue
            return step, restored.state, restored.data
        return None

    def wait(self) -> None:
        """Block until pending async saves are committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
