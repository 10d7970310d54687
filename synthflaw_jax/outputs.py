"""Everything a command writes, under one contract (the `--overwrite` contract).

1. The output is checked before any work: a path under a regular file, a directory where a
   file is expected (or the reverse), an existing output without `overwrite`, and an output
   that is an input or nests inside one (or holds one), which is refused even with
   `overwrite`, each give a one-line `SynthflawError`.
2. The output is built under a hidden temporary name beside its final place
   (`.NAME.tmp-PID-XXXX`) and renamed into place only when complete, so a crash, a kill or
   a full disk never leaves a half-written output visible, and a replaced output is removed
   only after its replacement is in place.
3. Outputs get ordinary permissions (0777/0666 less the umask), like any `mkdir`/`open`.

Leftovers of a killed run (temporary siblings of a dead process) are removed by the next
run that writes the same output; if a kill fell between moving the old output aside and
moving the new one in, the old one is put back.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import pathlib
import re
import shutil
import tempfile
import uuid
from typing import Iterable, Iterator

from synthflaw_jax.errors import SynthflawError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
# errors that mean "the disk (or a size limit) is full": reported as such, in one line
_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _label(path: pathlib.Path, what: str | None) -> str:
    return f"{what} {path}" if what else str(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_parents(out: pathlib.Path, label: str) -> None:
    for parent in out.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise SynthflawError(f"{label}: cannot be created, {parent} is a file, not a directory")
            return


def _check_not_nested(out: pathlib.Path, inputs: Iterable[PathLike | None], label: str) -> None:
    real_out = pathlib.Path(os.path.realpath(out))
    for given in inputs:
        if given is None or str(given) == "":
            continue
        real_in = pathlib.Path(os.path.realpath(given))
        if real_in == real_out:
            raise SynthflawError(f"{label}: is the input {given} itself; write to another path")
        if real_out in real_in.parents:
            raise SynthflawError(f"{label}: contains the input {given}; write to another path")
        if real_in in real_out.parents:
            raise SynthflawError(f"{label}: is inside the input {given}; write to another path")


def check_location(out: PathLike, what: str | None = None) -> pathlib.Path:
    """Refuse an output directory `out` under a regular file, or that is a file itself (for
    outputs that are resumed rather than replaced, such as a workdir); returns it absolute."""
    out = pathlib.Path(out).absolute()
    label = _label(out, what)
    _check_parents(out, label)
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise SynthflawError(f"{label}: exists and is not a directory")
    return out


def check(out: PathLike, overwrite: bool = False, *, kind: str = "dir",
          inputs: Iterable[PathLike | None] = (), what: str | None = None) -> pathlib.Path:
    """Check that `out` (kind "dir" or "file") may be written, before any work; returns it
    absolute. `inputs` are the paths the command reads: `out` may not be one of them, nor
    contain or lie inside one, whatever `overwrite` says. `what` names the flag in errors."""
    if kind not in ("dir", "file"):
        raise ValueError(f"kind must be 'dir' or 'file', got {kind!r}")
    out = pathlib.Path(out).absolute()
    label = _label(out, what)
    _check_parents(out, label)
    _check_not_nested(out, inputs, label)
    _restore_interrupted_swap(out)
    if kind == "dir":
        if out.exists() and not out.is_dir():
            raise SynthflawError(f"{label}: exists and is not a directory")
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise SynthflawError(f"{label}: directory exists and is not empty (pass --overwrite to replace it)")
    else:
        if out.is_dir():
            raise SynthflawError(f"{label}: is a directory, expected a file")
        if out.exists() and not overwrite:
            raise SynthflawError(f"{label}: file exists (pass --overwrite to replace it)")
    return out


def make_parent(out: pathlib.Path, label: str) -> list[pathlib.Path]:
    """Create `out`'s missing parent directories (ordinary permissions), one-line error on
    failure; returns those it created, deepest first (see `remove_created`)."""
    missing = [p for p in out.parents if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SynthflawError(f"{label}: cannot create {out.parent} ({err.strerror or err})") from None
    return missing


def remove_created(dirs: list[pathlib.Path]) -> None:
    """Remove the (still empty) directories `make_parent` created: a failed command adds nothing."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return


def write_error(out: PathLike, err: BaseException, what: str | None = None) -> SynthflawError | None:
    """A one-line SynthflawError for a write that failed on a full disk, a file-size limit or
    a permission (None for other errors, which are bugs and keep their traceback)."""
    label = _label(pathlib.Path(out), what)
    chain = [err]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
        if len(chain) > 10:
            break
    for e in chain:
        if isinstance(e, OSError) and e.errno in _FULL + (errno.EACCES, errno.EROFS, errno.EPERM):
            return SynthflawError(f"{label}: write failed ({os.strerror(e.errno)}); nothing was replaced")
    text = " ".join(str(err).split())
    for code in _FULL:
        if os.strerror(code) in text:
            return SynthflawError(f"{label}: write failed ({os.strerror(code)}); nothing was replaced")
    return None


# --------------------------------------------------------------------------- temporary names
def _tmp_prefix(out: pathlib.Path, kind: str) -> str:
    return f".{out.name}.{kind}-{os.getpid()}-"


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(out: pathlib.Path):
    """(path, kind) of temporary siblings of `out` left by processes that are gone."""
    if not out.parent.is_dir():
        return
    for sibling in out.parent.iterdir():
        match = _LEFTOVER.match(sibling.name)
        if match and match["name"] == out.name and not _pid_alive(int(match["pid"])):
            yield sibling, match["kind"]


def _restore_interrupted_swap(out: pathlib.Path) -> None:
    if out.exists() or out.is_symlink():
        return
    for path, kind in _leftovers(out):
        if kind == "old":  # killed between moving the old output aside and moving the new one in
            log.warning("%s: restoring the previous output from an interrupted replace (%s)", out, path.name)
            path.rename(out)
            return


def _remove_leftovers(out: pathlib.Path) -> None:
    _restore_interrupted_swap(out)
    for path, _ in _leftovers(out):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _replace(tmp: pathlib.Path, out: pathlib.Path) -> None:
    """Move the finished `tmp` to `out`; an existing `out` is moved aside first and removed last."""
    if out.is_dir() and not out.is_symlink():
        old = pathlib.Path(tempfile.mkdtemp(prefix=_tmp_prefix(out, "old"), dir=out.parent))
        os.rmdir(old)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# --------------------------------------------------------------------------- writers
@contextlib.contextmanager
def directory(out: PathLike, overwrite: bool = False, *, inputs: Iterable[PathLike | None] = (),
              what: str | None = None) -> Iterator[pathlib.Path]:
    """Yield an empty temporary directory beside `out`; when the block finishes it becomes
    `out` (replacing an existing one only with `overwrite`). On an error the temporary
    directory is removed and `out` is left as it was; a full disk becomes one-line error."""
    inputs = list(inputs)
    out = check(out, overwrite, kind="dir", inputs=inputs, what=what)
    label = _label(out, what)
    created = make_parent(out, label)
    _remove_leftovers(out)
    try:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=_tmp_prefix(out, "tmp"), dir=out.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs read like any other folder
    except OSError as err:
        remove_created(created)
        raise SynthflawError(f"{label}: cannot write in {out.parent} ({err.strerror or err})") from None
    try:
        yield tmp
        check(out, overwrite, kind="dir", inputs=inputs, what=what)  # it may have appeared meanwhile
        _replace(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_created(created)
        friendly = write_error(out, err, what) if isinstance(err, Exception) else None
        if friendly is not None and not isinstance(err, SynthflawError):
            raise friendly from None
        raise


@contextlib.contextmanager
def file(out: PathLike, overwrite: bool = False, *, inputs: Iterable[PathLike | None] = (),
         what: str | None = None, checked: bool = False) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside `out` to write a file to; it becomes `out` when the
    block finishes. `checked=True` skips the up-front check (done earlier with `check`)."""
    inputs = list(inputs)
    out = pathlib.Path(out).absolute() if checked else check(out, overwrite, kind="file", inputs=inputs, what=what)
    label = _label(out, what)
    created = make_parent(out, label)
    _remove_leftovers(out)
    tmp = out.parent / (_tmp_prefix(out, "tmp") + uuid.uuid4().hex[:8])
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"outputs.file: nothing was written to {tmp}")
        if not checked:
            check(out, overwrite, kind="file", inputs=inputs, what=what)
        os.replace(tmp, out)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        remove_created(created)
        friendly = write_error(out, err, what) if isinstance(err, Exception) else None
        if friendly is not None and not isinstance(err, SynthflawError):
            raise friendly from None
        raise


def write_text(out: PathLike, text: str, overwrite: bool = True, **kwargs) -> pathlib.Path:
    """Write `text` (UTF-8) to `out` atomically under the contract; returns `out`."""
    with file(out, overwrite, **kwargs) as tmp:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return pathlib.Path(out)
