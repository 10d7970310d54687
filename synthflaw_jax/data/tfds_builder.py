"""A TFDS builder for local JSONL, written as array_record: build once, train from it.

TensorFlow is not needed: `download_and_prepare(file_format="array_record")` writes the
shards and `TfdsSource` (sources.py) reads them by random access. The `tfds build` command
line imports TensorFlow, so use `build_tfds` (or `synthflaw data build-tfds`) instead.
Each example keeps the original JSON line (`json`) and where it came from (`origin`), in
source order (`disable_shuffling=True`), so any record shape round-trips unchanged.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import shutil

import tensorflow_datasets as tfds

from synthflaw_jax import outputs, runtime
from synthflaw_jax.data.sources import JsonlSource, Validator
from synthflaw_jax.errors import SynthflawError

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class JsonlRecords(tfds.core.GeneratorBasedBuilder):
    """JSON Lines records as one `train` split; the input comes from `files=` or the manual dir."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Records as JSON text plus their path:line origin."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the *.jsonl / *.json files in the manual directory."

    # TFDS looks for a checksums file next to the builder's code through the
    # `importlib_resources` backport, which is not installed; we download nothing.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None

    def __init__(self, *, source: str | None = None, validate: Validator | None = None,
                 skip_bad_records: bool = False, **kwargs):
        self._source_spec = source
        self._validate = validate
        self._skip_bad_records = skip_bad_records
        self.bad_records = 0
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Local JSON Lines records, one JSON object per example, in source order.",
            features=tfds.features.FeaturesDict({"json": tfds.features.Text(), "origin": tfds.features.Text()}),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        spec = self._source_spec or str(dl_manager.manual_dir)
        source = JsonlSource(spec, validate=self._validate, skip_bad_records=self._skip_bad_records)
        self.bad_records = source.bad_records
        return {"train": self._generate_examples(source)}

    def _generate_examples(self, source: JsonlSource):
        for i in range(len(source)):
            record = source[i]
            origin = record.pop("_origin")
            yield i, {"json": json.dumps(record, ensure_ascii=False), "origin": origin}


def build_tfds(source: str, data_dir: str | os.PathLike, *, name: str = "default",
               validate: Validator | None = None, skip_bad_records: bool = False,
               overwrite: bool = False) -> pathlib.Path:
    """Prepare JSONL `source` (file, glob or directory) as TFDS array_record under `data_dir`.

    Returns the prepared dataset directory (give it to `TfdsSource` / `source_type="tfds"`).
    A dataset of the same `name` in `data_dir` is refused unless `overwrite` (then replaced
    once the new one is complete): it may have been built from another source.
    """
    if not name or not _NAME.match(name):
        raise SynthflawError(f"--name {name!r}: use letters, digits, '_', '-' and '.' only")
    root = runtime.as_path(data_dir) if runtime.is_remote(data_dir) else pathlib.Path(data_dir).absolute()
    home = root / JsonlRecords.name / name  # a bucket data_dir: built locally, then committed there
    inputs = [source] if os.path.exists(source) else []
    outputs.check(home, overwrite, inputs=inputs, what="--data-dir/--name")
    with outputs.directory(home, overwrite, inputs=inputs, what="--data-dir/--name") as tmp:
        staging = tmp / "build"
        builder = JsonlRecords(
            source=source, validate=validate, skip_bad_records=skip_bad_records,
            data_dir=str(staging), config=tfds.core.BuilderConfig(name=name), file_format="array_record",
        )
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=source if os.path.isdir(source) else None)
            )
        except SynthflawError:
            raise
        except Exception as err:
            raise SynthflawError(f"{source}: TFDS build into {data_dir} failed: {type(err).__name__}: {err}")
        built = pathlib.Path(builder.data_dir)
        built.rename(tmp / built.name)
        shutil.rmtree(staging)
        version = built.name
    if builder.bad_records:
        log.warning("%s: skipped %d bad records", source, builder.bad_records)
    return home / version
