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

A bucket output (gs://...) keeps the same contract where objects allow it (they have no
rename, and one object is replaced whole, never seen half-written): a file is written
locally and uploaded as one object; a directory is built locally, uploaded under a hidden
temporary prefix beside its place, then committed by server-side copies into place with its
marker files (`COMMIT_LAST`: metrics.json, summary.json, config.json, the checkpoint marker)
copied last and removed first, so a reader that needs them never takes a partial directory
for a complete one. Unlike on local disk, a replace interrupted during that commit (seconds:
no data passes through this machine) cannot put the old output back: the output is left
without its markers, refused by readers, and the rerun writes it again.
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

from synthflaw_jax import runtime
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
    if runtime.is_remote(out):
        label = _label(out, what)
        _bucket_call(label, runtime.check_bucket, out, what)
        if _bucket_call(label, runtime.bucket_fs(out).isfile, str(out)):
            raise SynthflawError(f"{label}: exists and is not a directory")
        return runtime.as_path(out)
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
    if runtime.is_remote(out):
        return _check_remote(out, overwrite, kind, inputs, what)
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
    directory is removed and `out` is left as it was; a full disk becomes one-line error.
    A bucket `out` is built in a local temporary directory and committed as the module says."""
    inputs = list(inputs)
    if runtime.is_remote(out):
        with _remote_directory(out, overwrite, inputs, what) as tmp:
            yield tmp
        return
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
    block finishes. `checked=True` skips the up-front check (done earlier with `check`).
    A bucket `out` is written locally and uploaded as one object at the end."""
    inputs = list(inputs)
    if runtime.is_remote(out):
        with _remote_file(out, overwrite, inputs, what, checked) as tmp:
            yield tmp
        return
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
    return runtime.as_path(out)


# --------------------------------------------------------------------------- buckets
# Files copied last into a committed bucket directory (and removed first from the one it
# replaces), in this order: what readers look for before they read the rest (an eval's
# metrics, a run's summary, an HF directory's config.json, and our model checkpoint's
# marker, which must come after its config).
COMMIT_LAST = ("metrics.json", "summary.json", "config.json", "synthflaw_model.json")


def _bucket_call(label: str, fn, *args, **kwargs):
    """`fn(*args)` with bucket failures (missing object/bucket, permissions) as one line."""
    try:
        return fn(*args, **kwargs)
    except SynthflawError:
        raise
    except Exception as err:
        friendly = runtime.bucket_error(label, err)
        if friendly is None:
            raise
        raise friendly from None


def _key(path) -> str:
    """`bucket/key` of a bucket path, without scheme or trailing slash."""
    return str(path).split("://", 1)[1].rstrip("/")


def _check_remote(out, overwrite: bool, kind: str, inputs, what: str | None):
    label = _label(out, what)
    _bucket_call(label, runtime.check_bucket, out, what)
    fs = runtime.bucket_fs(out)
    key = _key(out)
    for given in inputs:
        if given is None or str(given) == "" or not runtime.is_remote(given):
            continue
        other = _key(given)
        if other == key:
            raise SynthflawError(f"{label}: is the input {given} itself; write to another path")
        if other.startswith(key + "/"):
            raise SynthflawError(f"{label}: contains the input {given}; write to another path")
        if key.startswith(other + "/"):
            raise SynthflawError(f"{label}: is inside the input {given}; write to another path")
    is_file = _bucket_call(label, fs.isfile, key)
    has_children = bool(_bucket_call(label, fs.find, key + "/", maxdepth=None))
    if kind == "dir":
        if is_file:
            raise SynthflawError(f"{label}: exists and is not a directory")
        if has_children and not overwrite:
            raise SynthflawError(f"{label}: directory exists and is not empty (pass --overwrite to replace it)")
    else:
        if has_children:
            raise SynthflawError(f"{label}: is a directory, expected a file")
        if is_file and not overwrite:
            raise SynthflawError(f"{label}: file exists (pass --overwrite to replace it)")
    return runtime.as_path(out)


def _remote_leftovers(out) -> list[str]:
    """Temporary prefixes beside the bucket output `out` left by processes gone from this host."""
    fs = runtime.bucket_fs(out)
    parent, _, name = _key(out).rpartition("/")
    found = []
    try:
        entries = fs.ls(parent, detail=False) if parent else []
    except FileNotFoundError:
        return found
    for entry in entries:
        match = _LEFTOVER.match(entry.rstrip("/").rsplit("/", 1)[-1])
        if match and match["name"] == name and not _pid_alive(int(match["pid"])):
            found.append(entry.rstrip("/"))
    return found


def _remove_prefix(fs, key: str) -> None:
    objects = fs.find(key + "/")
    if objects:
        fs.rm(objects)


def _commit(fs, staged: str, out: str) -> None:
    """Put the complete staged prefix in place with server-side copies: the replaced output
    first loses its markers, then the new objects are copied over it, the old objects the
    new output lacks are removed, and the markers come last. Interrupted, the output has no
    marker: readers refuse it, and rerunning the command writes it again."""
    def top_marker(obj: str, root: str) -> bool:
        return obj[len(root) + 1:] in COMMIT_LAST

    old = fs.find(out + "/")
    old_markers = [o for o in old if top_marker(o, out)]
    for name in reversed(COMMIT_LAST):  # the checkpoint marker before its config
        doomed = [o for o in old_markers if o.endswith("/" + name)]
        if doomed:
            fs.rm(doomed)
    new = fs.find(staged + "/")
    rel = [o[len(staged):] for o in new]
    body = [r for r in rel if r[1:] not in COMMIT_LAST]
    if body:
        fs.copy([staged + r for r in body], [out + r for r in body])
    stale = sorted(set(o[len(out):] for o in old) - set(rel) - {"/" + m for m in COMMIT_LAST})
    if stale:
        fs.rm([out + r for r in stale])
    for name in COMMIT_LAST:
        if "/" + name in rel:
            fs.copy(staged + "/" + name, out + "/" + name)
    fs.rm(new)


@contextlib.contextmanager
def _remote_directory(out, overwrite: bool, inputs, what: str | None) -> Iterator[pathlib.Path]:
    label = _label(out, what)
    _check_remote(out, overwrite, "dir", inputs, what)
    fs = runtime.bucket_fs(out)
    key = _key(out)
    parent, _, name = key.rpartition("/")
    if not parent:
        raise SynthflawError(f"{label}: write under a prefix of the bucket, not its root")
    for leftover in _remote_leftovers(out):
        _bucket_call(label, _remove_prefix, fs, leftover)
    local = pathlib.Path(tempfile.mkdtemp(prefix="synthflaw-out-"))
    staged = f"{parent}/{_tmp_prefix(pathlib.Path(name), 'tmp')}{uuid.uuid4().hex[:8]}"
    try:
        yield local
        files = [p for p in sorted(local.rglob("*")) if p.is_file()]
        _bucket_call(label, fs.put, [str(p) for p in files], [f"{staged}/{p.relative_to(local).as_posix()}" for p in files])
        _check_remote(out, overwrite, "dir", inputs, what)  # it may have appeared meanwhile
        _bucket_call(label, _commit, fs, staged, key)
    except BaseException as err:
        try:
            _remove_prefix(fs, staged)
        except Exception:  # the next run that writes `out` removes it
            pass
        friendly = write_error(out, err, what) if isinstance(err, Exception) else None
        if friendly is not None and not isinstance(err, SynthflawError):
            raise friendly from None
        raise
    finally:
        shutil.rmtree(local, ignore_errors=True)


@contextlib.contextmanager
def _remote_file(out, overwrite: bool, inputs, what: str | None, checked: bool) -> Iterator[pathlib.Path]:
    label = _label(out, what)
    if not checked:
        _check_remote(out, overwrite, "file", inputs, what)
    local = pathlib.Path(tempfile.mkdtemp(prefix="synthflaw-out-"))
    try:
        tmp = local / _key(out).rsplit("/", 1)[-1]
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"outputs.file: nothing was written to {tmp}")
        if not checked:
            _check_remote(out, overwrite, "file", inputs, what)
        _bucket_call(label, runtime.bucket_fs(out).put_file, str(tmp), _key(out))  # one object: all or nothing
    finally:
        shutil.rmtree(local, ignore_errors=True)
