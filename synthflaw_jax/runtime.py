"""Multi-host runtime: joining the processes of a pod, who writes, the global mesh, paths.

On a TPU pod slice every host runs the same `synthflaw unlearn` command (`launch/run.py`
starts it with `--worker=all`); `initialize(config)` makes those processes one JAX program
(`jax.distributed.initialize`) before anything touches a device. After that `jax.devices()`
lists every chip of the job, arrays span hosts, and each host feeds its own share of the
batch (data/pipeline.py). Process 0 alone writes our own files (metrics, summary, the HF
export); Orbax coordinates the checkpoint writes of all hosts itself.

The `runtime` config section (not recorded in the workdir's config.json: it describes a
launch, not a run, and differs per process):

- `distributed`: "auto" (join when the environment shows more than one host: a TPU pod's
  worker list or a multislice `MEGASCALE_*` setting; JAX's own cluster detection then finds
  the coordinator and this host's id), "on" (always call `jax.distributed.initialize`, with
  the fields below where set and JAX's detection for the rest), "off" (one process).
- `coordinator_address` ("host:port" of process 0), `num_processes`, `process_id`: set them
  where JAX cannot detect the cluster (e.g. local processes in tests); empty / -1 = detect.
- `cpu_collectives`: collectives between CPU processes ("gloo"; "" leaves JAX's default).
"""
from __future__ import annotations

import logging
import math
import os
import pathlib
import shutil
import socket
from typing import Mapping, Sequence

import jax
import ml_collections
import numpy as np

from synthflaw_jax import sharding as shd
from synthflaw_jax.errors import SynthflawError

log = logging.getLogger(__name__)

DISTRIBUTED_MODES = ("auto", "on", "off")


def default_runtime_config() -> ml_collections.ConfigDict:
    """The `runtime` section of an unlearning config."""
    c = ml_collections.ConfigDict()
    c.distributed = "auto"         # auto | on | off: jax.distributed.initialize() on multi-host
    c.coordinator_address = ""     # "host:port" of process 0; "" = detected (TPU pods)
    c.num_processes = -1           # -1 = detected
    c.process_id = -1              # this process's id; -1 = detected
    c.cpu_collectives = "gloo"     # collectives between CPU processes; "" = JAX's default
    return c


# --------------------------------------------------------------------------- detection
def _count_hosts(value: str | None) -> int:
    return len([h for h in (value or "").split(",") if h.strip()])


def multihost_env(environ: Mapping[str, str] | None = None) -> str | None:
    """Why this environment looks like a multi-host job (a short reason), or None.

    Read from environment variables only (no metadata server): a multislice job
    (`MEGASCALE_COORDINATOR_ADDRESS`, or `MEGASCALE_NUM_SLICES` > 1) or a TPU worker list
    (`TPU_PROCESS_ADDRESSES` / `TPU_WORKER_HOSTNAMES`) naming more than one host.
    """
    env = os.environ if environ is None else environ
    if env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "MEGASCALE_COORDINATOR_ADDRESS is set (multislice)"
    try:
        if int(env.get("MEGASCALE_NUM_SLICES") or 1) > 1:
            return f"MEGASCALE_NUM_SLICES={env['MEGASCALE_NUM_SLICES']} (multislice)"
    except ValueError:
        pass
    for key in ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES"):
        n = _count_hosts(env.get(key))
        if n > 1:
            return f"{key} names {n} hosts"
    return None


def _gce_tpu_worker_count(timeout: float = 2.0) -> int:
    """Workers of this Cloud TPU VM's slice from the GCE metadata server; 0 when it is not one.

    Asked only on a machine with TPU device files, with a short timeout, so a laptop, a
    CPU CI box or Colab never waits on it."""
    if not (pathlib.Path("/dev/accel0").exists() or pathlib.Path("/dev/vfio/0").exists()):
        return 0
    if os.environ.get("TPU_SKIP_MDS_QUERY"):
        return 0
    import urllib.request

    host = os.environ.get("GCE_METADATA_IP", "metadata.google.internal")
    request = urllib.request.Request(
        f"http://{host}/computeMetadata/v1/instance/attributes/worker-network-endpoints",
        headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _count_hosts(response.read().decode())
    except Exception:  # no metadata server (Colab, other clouds): a single host
        return 0


def should_initialize(rt, environ: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(join a multi-host job?, why) for the `runtime` section `rt`."""
    mode = str(rt.distributed).lower()
    if mode not in DISTRIBUTED_MODES:
        raise SynthflawError(f"config runtime.distributed: {rt.distributed!r} is not one of {', '.join(DISTRIBUTED_MODES)}")
    if mode == "off":
        return False, "runtime.distributed=off"
    if mode == "on":
        return True, "runtime.distributed=on"
    if int(rt.num_processes) > 1:
        return True, f"runtime.num_processes={int(rt.num_processes)}"
    reason = multihost_env(environ)
    if reason:
        return True, reason
    if environ is None:
        workers = _gce_tpu_worker_count()
        if workers > 1:
            return True, f"Cloud TPU VM with {workers} workers"
    return False, "single host"


def initialize(config) -> bool:
    """Join the multi-host job when `config.runtime` says so (see the module doc); returns
    whether this process is part of one. Call before anything touches a JAX device; calling
    it again (a second run in one process) does nothing."""
    rt = config.get("runtime") or default_runtime_config()
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    join, why = should_initialize(rt)
    if not join:
        return False
    if rt.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", str(rt.cpu_collectives))
    kwargs = {}
    if rt.coordinator_address:
        kwargs["coordinator_address"] = str(rt.coordinator_address)
    if int(rt.num_processes) > 0:
        kwargs["num_processes"] = int(rt.num_processes)
    if int(rt.process_id) >= 0:
        kwargs["process_id"] = int(rt.process_id)
    log.info("joining a multi-host job (%s)", why)
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as err:
        raise SynthflawError(f"jax.distributed.initialize failed ({why}): {' '.join(str(err).split())[:300]}; "
                             "set runtime.coordinator_address/num_processes/process_id, or runtime.distributed=off") from None
    if not is_main():  # one log for the whole job: the other hosts report warnings only
        logging.getLogger("synthflaw_jax").setLevel(logging.WARNING)
    log.info("process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count())
    return jax.process_count() > 1


def is_main() -> bool:
    """True on the process that writes the run's own files (process 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches `name` (nothing to do with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def to_host(x) -> np.ndarray:
    """A jax.Array (or numpy) as a numpy array on this host. An array spread over several
    hosts is gathered with `process_allgather`: every process must call this for the same
    arrays in the same order."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


# --------------------------------------------------------------------------- mesh
def num_slices(devices: Sequence | None = None) -> int:
    """How many TPU slices the devices span (1 off multislice; CPU devices have no slice)."""
    devices = jax.devices() if devices is None else devices
    return len({getattr(d, "slice_index", 0) or 0 for d in devices})


def _resolve(sizes: list[int], n: int, where: str) -> list[int]:
    if sizes.count(-1) > 1:
        raise SynthflawError("mesh: at most one of data/fsdp/tensor may be -1")
    if any(s == 0 or s < -1 for s in sizes):
        raise SynthflawError(f"mesh: sizes must be positive or -1, got {sizes}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n % known:
            raise SynthflawError(f"mesh: {n} devices {where} do not divide by {known}")
        sizes[sizes.index(-1)] = n // known
    if math.prod(sizes) != n:
        raise SynthflawError(f"mesh: data*fsdp*tensor = {math.prod(sizes)} but there are {n} devices {where}")
    return sizes


def hybrid_mesh_shapes(data: int, fsdp: int, tensor: int, num_devices: int,
                       slices: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(ICI shape inside one slice, DCN shape across slices) of the (data, fsdp, tensor) mesh.

    Across slices only data parallelism runs (the slow DCN links carry one gradient
    reduction per step): the DCN shape is (slices, 1, 1). `data` counts data-parallel groups
    over the whole job and must be a multiple of `slices` (the default 1 is read as
    `slices`); -1 in `data`, `fsdp` or `tensor` takes the rest of each slice's devices.
    """
    if slices < 1 or num_devices % slices:
        raise SynthflawError(f"mesh: {num_devices} devices do not split into {slices} slices")
    if slices == 1:
        return tuple(_resolve([data, fsdp, tensor], num_devices, "in total")), (1, 1, 1)
    if data == 1:
        data = slices
    if data != -1 and data % slices:
        raise SynthflawError(f"mesh: data={data} must be a multiple of the {slices} slices "
                             "(data parallelism runs across slices)")
    ici_data = -1 if data == -1 else data // slices
    ici = _resolve([ici_data, fsdp, tensor], num_devices // slices, "per slice")
    return tuple(ici), (slices, 1, 1)


def make_mesh(mesh_config, devices: Sequence | None = None):
    """The ("data", "fsdp", "tensor") mesh over every device of the job (all hosts).

    One slice: on TPU the device order follows the chip topology
    (`mesh_utils.create_device_mesh`), elsewhere it is `jax.devices()` order (as
    `sharding.make_mesh`). Several slices: `create_hybrid_device_mesh` with ICI axes inside
    each slice and data parallelism over DCN (`hybrid_mesh_shapes`)."""
    from jax.experimental import mesh_utils
    from jax.sharding import Mesh

    devices = list(jax.devices() if devices is None else devices)
    data, fsdp, tensor = int(mesh_config.data), int(mesh_config.fsdp), int(mesh_config.tensor)
    slices = num_slices(devices)
    ici, dcn = hybrid_mesh_shapes(data, fsdp, tensor, len(devices), slices)
    axis_types = (jax.sharding.AxisType.Auto,) * len(shd.MESH_AXES)
    if slices > 1:
        grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices=devices, allow_split_physical_axes=True)
        return Mesh(grid, shd.MESH_AXES, axis_types=axis_types)
    if devices[0].platform == "tpu":
        try:
            grid = mesh_utils.create_device_mesh(ici, devices=devices, allow_split_physical_axes=True)
            return Mesh(grid, shd.MESH_AXES, axis_types=axis_types)
        except (ValueError, NotImplementedError) as err:
            log.warning("mesh %s: no topology-aware layout (%s); using device order", ici, err)
    return shd.make_mesh(*ici, devices=devices)


# --------------------------------------------------------------------------- paths
def is_remote(path) -> bool:
    """True for a bucket path (gs://, s3://, ...), false for a local one."""
    return "://" in str(path)


def as_path(path):
    """`pathlib.Path` for a local path, `etils.epath.Path` for a bucket path (gs://...):
    both take the same exists / read_text / write_text / open / mkdir / rename calls."""
    if is_remote(path):
        from etils import epath

        _no_listing_cache()  # before epath makes its filesystem
        return epath.Path(str(path))
    return pathlib.Path(path)


def copy_tree(src: pathlib.Path, dst) -> None:
    """Copy the local directory `src` to `dst` (local or bucket), replacing files there."""
    if is_remote(dst):
        files = [p for p in sorted(pathlib.Path(src).rglob("*")) if p.is_file()]
        if files:
            fs = bucket_fs(dst)
            fs.put([str(p) for p in files], [f"{str(dst).rstrip('/')}/{p.relative_to(src).as_posix()}" for p in files])
        return
    dst = as_path(dst)
    for path in sorted(pathlib.Path(src).rglob("*")):
        target = dst / path.relative_to(src).as_posix()
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with path.open("rb") as f, target.open("wb") as g:  # streamed: shards can be GBs
                shutil.copyfileobj(f, g, 64 * 2**20)


# --------------------------------------------------------------------------- buckets
# Bucket paths (gs://) go through fsspec's filesystem for them (gcsfs), the one `etils.epath`
# uses too; Orbax checkpoints go through TensorStore's own GCS driver. Both reach a local
# emulator through their documented settings (STORAGE_EMULATOR_HOST for gcsfs,
# TENSORSTORE_GCS_HTTP_URL for TensorStore).
_checked_buckets: set[str] = set()
_input_cache: dict[str, str] = {}
_remote_names: dict[str, str] = {}  # downloaded local file -> the gs:// object it came from
_cache_root: list[pathlib.Path] = []


def _no_listing_cache() -> None:
    """gcsfs caches directory listings forever by default; Orbax's checkpoint files are written
    by TensorStore behind its back, so a cached listing would hide a newly committed step."""
    import fsspec.config

    for protocol in ("gcs", "gs"):
        fsspec.config.conf.setdefault(protocol, {}).setdefault("use_listings_cache", False)


def bucket_fs(path):
    """The fsspec filesystem of the bucket path `path` (the instance `etils.epath` uses)."""
    import fsspec

    _no_listing_cache()
    protocol = str(path).split("://", 1)[0]
    if protocol in ("gs", "gcs"):
        return fsspec.filesystem("gcs", finalize_on_close=True)
    return fsspec.filesystem(protocol)


def bucket_name(path) -> str:
    """The bucket of a bucket path: "b" for gs://b/x/y."""
    return str(path).split("://", 1)[1].split("/", 1)[0]


def bucket_error(path, err: BaseException) -> SynthflawError | None:
    """A one-line SynthflawError naming `path` for a bucket failure (missing object, missing
    bucket, no permission, no credentials); None for other errors."""
    text = " ".join(str(err).split())[:200]
    name = type(err).__name__
    code = getattr(err, "code", None)
    if name in ("DefaultCredentialsError", "RefreshError"):
        return SynthflawError(f"{path}: no usable Google Cloud credentials ({text}); run "
                              "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS")
    if isinstance(err, PermissionError) or code in (401, 403):
        return SynthflawError(f"{path}: permission denied ({text}); check the credentials and the "
                              "bucket's access rights")
    if isinstance(err, FileNotFoundError) or code == 404:
        return SynthflawError(f"{path}: no such object or bucket")
    return None


def check_bucket(path, what: str | None = None) -> None:
    """Refuse, in one line naming `path` (and `what`, the flag or field), a bucket path whose
    bucket is missing or cannot be reached for lack of credentials (checked once per bucket
    per process). Against an emulator (STORAGE_EMULATOR_HOST set) no credentials are needed."""
    label = f"{what} {path}" if what else str(path)
    bucket = bucket_name(path)
    if not bucket:
        raise SynthflawError(f"{label}: no bucket name")
    if bucket in _checked_buckets:
        return
    if str(path).startswith(("gs://", "gcs://")) and not os.environ.get("STORAGE_EMULATOR_HOST"):
        try:
            import google.auth

            google.auth.default()
        except Exception as err:
            friendly = bucket_error(label, err)
            if friendly is None:
                raise
            raise friendly from None
    try:
        found = bucket_fs(path).exists(bucket)
    except Exception as err:
        friendly = bucket_error(label, err)
        if friendly is None:
            raise SynthflawError(f"{label}: cannot reach the bucket ({' '.join(str(err).split())[:200]})") from None
        raise friendly from None
    if not found:
        raise SynthflawError(f"{label}: bucket {bucket!r} does not exist (or these credentials cannot see it)")
    _checked_buckets.add(bucket)


_CACHE_PREFIX = "synthflaw-bucket-"


def _cache_dir() -> pathlib.Path:
    """This process's local directory for downloaded bucket inputs (removed at exit). Its
    name carries the host and the process id, so that the next process on the host can
    remove what a killed one left (`_remove_dead_caches`)."""
    if not _cache_root:
        import atexit
        import tempfile

        host = socket.gethostname().replace("-", "_")
        root = pathlib.Path(tempfile.mkdtemp(prefix=f"{_CACHE_PREFIX}{host}-{os.getpid()}-"))
        atexit.register(shutil.rmtree, root, True)
        _remove_dead_caches(root.parent, host)
        _cache_root.append(root)
    return _cache_root[0]


def _remove_dead_caches(tmp: pathlib.Path, host: str) -> None:
    """Remove the download directories that processes of this user on this host left when
    they were killed (no exit handler ran): those whose process no longer exists. A live
    process, another user's or another host's directory (a shared TMPDIR) is left alone."""
    for path in tmp.glob(f"{_CACHE_PREFIX}{host}-*-*"):
        pid = path.name[len(_CACHE_PREFIX) + len(host) + 1:].split("-", 1)[0]
        try:
            if not pid.isdigit() or path.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)  # raises if there is no such process
        except ProcessLookupError:
            log.info("removing %s, left by process %s that no longer runs", path, pid)
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # PermissionError: the pid is alive (another user's); or the path vanished
            continue


def source_name(path) -> str:
    """The name to show for a file `local_input` downloaded (its gs:// path), else `path`."""
    return _remote_names.get(str(path), str(path))


def _fetch(fs, objects: list[str], targets: list[pathlib.Path], scheme: str) -> None:
    fs.get(objects, [str(t) for t in targets])
    for obj, target in zip(objects, targets):
        _remote_names[str(target)] = f"{scheme}://{obj}"


def local_input(path, what: str | None = None, *, recursive: bool = True, exclude: tuple[str, ...] = ()) -> str:
    """A local path holding the input `path`: `path` itself when it is local; for a bucket
    object, prefix ("directory") or glob, a local copy downloaded once per process (a glob
    keeps its pattern, applied to the downloaded matches). A prefix is fetched with its
    sub-prefixes unless `recursive` is False, leaving out objects whose names end with one of
    `exclude`. Missing objects, buckets or credentials raise one line naming `path` (and
    `what`, the flag or field)."""
    if not is_remote(path):
        return str(path) if isinstance(path, str) else path
    path = str(path)
    key = f"{path}|{recursive}|{','.join(exclude)}"
    if key in _input_cache:
        return _input_cache[key]
    label = f"{what} {path}" if what else path
    check_bucket(path, what)
    fs = bucket_fs(path)
    local = _cache_dir() / f"{len(_input_cache)}"
    try:
        import glob as glob_lib

        if glob_lib.has_magic(path):
            scheme, rest = path.split("://", 1)
            parts = rest.split("/")
            fixed = next(i for i, part in enumerate(parts) if glob_lib.has_magic(part))
            root = "/".join(parts[:fixed])
            matches = [m for m in fs.glob(rest) if fs.isfile(m)]
            if not matches:
                raise SynthflawError(f"{label}: glob matches no objects")
            _fetch(fs, matches, [local / m[len(root) + 1:] for m in matches], scheme)
            result = str(local / "/".join(parts[fixed:]))
        elif fs.isfile(path):
            target = local / path.rstrip("/").rsplit("/", 1)[-1]
            _fetch(fs, [path.split("://", 1)[1]], [target], path.split("://", 1)[0])
            result = str(target)
        else:
            found = fs.find(path.rstrip("/") + "/")
            if not found:
                raise SynthflawError(f"{label}: no such object or directory in the bucket")
            prefix = path.split("://", 1)[1].rstrip("/") + "/"
            found = [f for f in found if (recursive or "/" not in f[len(prefix):]) and not f.endswith(exclude)]
            target = local / path.rstrip("/").rsplit("/", 1)[-1]
            _fetch(fs, found, [target / f[len(prefix):] for f in found], path.split("://", 1)[0])
            result = str(target)
    except SynthflawError:
        raise
    except Exception as err:
        friendly = bucket_error(label, err)
        if friendly is None:
            raise
        raise friendly from None
    log.info("read %s (downloaded to %s)", path, result)
    _input_cache[key] = result
    return result
