#!/usr/bin/env python3
"""Put data and checkpoints where every worker can read them.

--upload LOCAL=gs://...  copies a file or directory from this machine to a bucket first (e.g.
                         the checkpoint `synthflaw convert hf-to-orbax` wrote);
--copy gs://...=/PATH    copies from the bucket onto each worker's local disk (--worker=all), for
                         inputs read with plain file I/O: model.path, data.tokenizer, the JSONL
                         streams. Workdirs can stay gs:// paths (Orbax writes checkpoints there).
Examples:
  python3 launch/copy_data.py --project my-proj --zone us-east5-a --name unlearn-7b \\
      --upload ./llama-2-7b=gs://my-bucket/models/llama-2-7b \\
      --copy gs://my-bucket/models/llama-2-7b=/data/models/llama-2-7b \\
      --copy gs://my-bucket/tofu=/data/tofu
"""
from __future__ import annotations

import pathlib
import posixpath
import re
import shlex

import _common as c

_GS = re.compile(r"gs://[a-z0-9][-a-z0-9_.]{1,220}(/\S*)?")


def build_parser(prog):
    p = c.parser(prog, __doc__)
    p.add_argument("--upload", action="append", default=[], metavar="LOCAL=gs://BUCKET/PATH",
                   help="copy a local file/directory to a bucket first (repeatable)")
    p.add_argument("--copy", action="append", default=[], metavar="gs://BUCKET/PATH=/ABS/PATH",
                   help="copy from a bucket to this path on every worker (repeatable)")
    p.add_argument("--root", default="/data", help="directory made writable for you on each worker (default /data)")
    return p


def _pair(text, flag):
    if "=" not in text:
        raise c.UsageError(f"{flag} {text!r}: expected SOURCE=DESTINATION")
    return text.split("=", 1)


def build_commands(args):
    if not args.upload and not args.copy:
        raise c.UsageError("nothing to do: give --upload and/or --copy")
    if not args.root.startswith("/") or not re.fullmatch(r"[\w./-]+", args.root):
        raise c.UsageError(f"--root {args.root!r} must be an absolute path")
    commands = []
    for item in args.upload:
        local, bucket = _pair(item, "--upload")
        if not pathlib.Path(local).exists():
            raise c.UsageError(f"--upload: {local} does not exist")
        if not _GS.fullmatch(bucket):
            raise c.UsageError(f"--upload: {bucket!r} is not a gs:// path")
        commands.append(["gcloud", "storage", "cp", "--recursive", local, bucket, f"--project={args.project}"])
    steps = ["set -e", f"sudo mkdir -p {args.root}", f'sudo chown "$(whoami)" {args.root}']
    for item in args.copy:
        bucket, dest = _pair(item, "--copy")
        if not _GS.fullmatch(bucket):
            raise c.UsageError(f"--copy: {bucket!r} is not a gs:// path")
        if not dest.startswith("/") or not re.fullmatch(r"[\w./-]+", dest):
            raise c.UsageError(f"--copy: destination {dest!r} must be an absolute path")
        parent = posixpath.dirname(dest.rstrip("/")) or "/"
        steps += [f"mkdir -p {shlex.quote(parent)}", f"rm -rf {shlex.quote(dest)}",
                  f"gcloud storage cp --recursive {shlex.quote(bucket.rstrip('/'))} {shlex.quote(parent)}/",
                  f"test -e {shlex.quote(dest)} || mv {shlex.quote(parent)}/{shlex.quote(posixpath.basename(bucket.rstrip('/')))} "
                  f"{shlex.quote(dest)}"]
    if args.copy:
        commands.append(c.ssh(args, " && ".join(steps)))
    return commands


if __name__ == "__main__":
    c.main("launch/copy_data.py", build_parser, build_commands)
