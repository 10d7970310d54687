"""`synthflaw <command>`: parses arguments and dispatches; the work lives in the library.

Every subcommand module in `synthflaw_jax.commands` exposes `HELP`, `add_arguments(parser)`
and `run(args) -> int`. Bad input raises `SynthflawError`, which becomes a one-line message
on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from synthflaw_jax import malloc_tuning, stopping
from synthflaw_jax.errors import SynthflawError


class _NoTorchNotice(logging.Filter):
    """Drops transformers' import-time "PyTorch was not found" notice: we use transformers for
    configs and tokenizers only, so without torch (a runtime-only install) nothing is missing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("PyTorch was not found")


# set before any command imports transformers (its notice is logged on the "transformers" logger)
logging.getLogger("transformers").addFilter(_NoTorchNotice())

# subcommand name -> module under synthflaw_jax.commands
COMMANDS = {
    "analyze": "analyze",
    "convert": "convert",
    "data": "data",
    "demo": "demo",
    "eval": "eval",
    "generate": "generate",
    "plan": "plan",
    "unlearn": "unlearn",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="synthflaw",
        description="Find and unlearn the flaws synthetic Q-A data leaves in an LLM.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"synthflaw_jax.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _no_background_tracebacks(record: logging.LogRecord) -> bool:
    # Orbax logs a failed background write (full disk) with its traceback, then raises it in
    # the main thread, where it becomes our one-line error; -v shows the traceback too.
    return not (record.exc_info and record.levelno >= logging.ERROR)


_ABANDONED = ("Event loop is closed", "Python is likely shutting down")


def _quiet_abandoned_writes(unraisable) -> None:
    # After a failed background write, Orbax's pending callbacks find their event loop gone
    # ("ignored" exceptions, printed with tracebacks); the error itself was already reported.
    if not any(text in str(unraisable.exc_value) for text in _ABANDONED):
        sys.__unraisablehook__(unraisable)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `synthflaw` console script; returns the process exit code."""
    if argv is None and malloc_tuning.should_relaunch(sys.argv[1:]):
        malloc_tuning.relaunch(sys.argv[1:])  # before the heavy imports; returns only on failure
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "_accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    malloc_tuning.note_relaunched()
    if not args.verbose:  # libraries' INFO chatter (Orbax, absl, JAX backends) hides our output
        for noisy in ("absl", "jax", "orbax"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
            logging.getLogger(noisy).addFilter(_no_background_tracebacks)
        # the same failed write, when its future is collected: "exception was never retrieved"
        logging.getLogger("asyncio").addFilter(_no_background_tracebacks)
        sys.unraisablehook = _quiet_abandoned_writes
    try:
        return int(args._run(args) or 0)
    except SynthflawError as err:
        print(f"synthflaw {args.command}: error: {err}", file=sys.stderr)
        return 2
    except stopping.RunStopped as stop:  # SIGTERM or Ctrl-C during training: the step is saved
        print(f"synthflaw {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"synthflaw {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
