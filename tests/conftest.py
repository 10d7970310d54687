"""Test setup: 8 fake CPU devices (set before JAX is imported) and the shared data folder."""
import logging
import os
import pathlib

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """`../shared/data` beside the repo; skips (with the reason) on a clone without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (present in CI)")
    return SHARED_DATA


class Bucket:
    """A GCS emulator's bucket as the tests see it: `url("x")` is gs://NAME/x, `env` the
    environment a child process needs to reach the emulator, `fs` a gcsfs client on it."""

    def __init__(self, name: str, port: int):
        self.name, self.port = name, port
        endpoint = f"http://localhost:{port}"
        self.env = {
            "STORAGE_EMULATOR_HOST": endpoint,        # gcsfs (and google-cloud-storage)
            "TENSORSTORE_GCS_HTTP_URL": endpoint,     # TensorStore, under Orbax: its own setting
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "any",   # TensorStore: skip the credential search
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # gcsfs: no bucket-type lookup (needs credentials)
        }

    def url(self, key: str = "") -> str:
        return f"gs://{self.name}/{key}"

    @property
    def fs(self):
        from gcsfs.core import GCSFileSystem  # the plain client: no bucket-type lookup

        return GCSFileSystem(endpoint_url=self.env["STORAGE_EMULATOR_HOST"], token="anon",
                             use_listings_cache=False, skip_instance_cache=True)


def _emulator_sends_generation_headers() -> None:
    """gcp-storage-emulator (2026.7.19) leaves out the `x-goog-generation` header of a media
    download, which GCS sends; TensorStore then reads generation 0 and refuses the
    conditional write that follows (OCDBT's manifest update: "Malformed StorageGeneration").
    Adds the header, from the object's own metadata, before the server binds its handlers."""
    from gcp_storage_emulator.handlers import objects

    original = objects.download
    if getattr(original, "_sends_generation", False):
        return

    def download(request, response, storage, *args, **kwargs):
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
            response["x-goog-generation"] = str(obj["generation"])
            response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
        except Exception:  # a missing object: the original handler answers 404
            pass
        return original(request, response, storage, *args, **kwargs)

    download._sends_generation = True
    objects.download = download


@pytest.fixture(scope="session")
def gcs_bucket():
    """A real GCS JSON API emulator (gcp-storage-emulator, in memory, on a free localhost
    port) with one bucket; this process's environment points at it for the session."""
    import socket

    _emulator_sends_generation_headers()
    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    server = create_server("localhost", port, in_memory=True, default_bucket="synthflaw-test")
    server.start()
    bucket = Bucket("synthflaw-test", port)
    saved = {k: os.environ.get(k) for k in bucket.env}
    os.environ.update(bucket.env)
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)  # "Resource not found" on every probe
    try:
        yield bucket
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
