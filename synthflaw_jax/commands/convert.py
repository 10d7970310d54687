"""`synthflaw convert hf-to-orbax HF_DIR CKPT_DIR`, `orbax-to-hf CKPT_DIR HF_DIR`, and from llama.cpp's
GGUF: `gguf-to-orbax FILE.gguf CKPT_DIR`, `gguf-to-hf FILE.gguf HF_DIR` (FILE may be a named model)."""
from __future__ import annotations

import re
import time

from synthflaw_jax.errors import SynthflawError

HELP = "convert weights between a Hugging Face directory and a synthflaw Orbax checkpoint"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?B)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def parse_size(text: str) -> int:
    """'5GB', '500MB', '123' (bytes) -> bytes."""
    match = _SIZE.match(text)
    if not match:
        raise SynthflawError(f"--max-shard-size: cannot read {text!r} (examples: 5GB, 500MB)")
    unit = match.group(2).upper() if match.group(2) else None
    return int(float(match.group(1)) * _UNITS[unit])


def parse_mesh(text: str | None):
    """'DATA,FSDP,TENSOR' (one may be -1) -> a mesh over all devices, or None."""
    if not text:
        return None
    from synthflaw_jax.sharding import make_mesh

    try:
        data, fsdp, tensor = (int(x) for x in text.split(","))
    except ValueError:
        raise SynthflawError(f"--mesh: expected DATA,FSDP,TENSOR integers, got {text!r}") from None
    return make_mesh(data, fsdp, tensor)


def add_arguments(parser) -> None:
    """Two sub-subcommands, one per direction."""
    sub = parser.add_subparsers(dest="direction", metavar="DIRECTION", required=True)
    to_orbax = sub.add_parser("hf-to-orbax", help="HF directory (config.json + safetensors) -> Orbax checkpoint")
    to_orbax.add_argument("hf_dir")
    to_orbax.add_argument("ckpt_dir")
    to_orbax.add_argument("--mesh", help="place tensors sharded on a DATA,FSDP,TENSOR mesh (e.g. 1,-1,1)")
    to_hf = sub.add_parser("orbax-to-hf", help="Orbax checkpoint -> HF directory that transformers loads")
    to_hf.add_argument("ckpt_dir")
    to_hf.add_argument("hf_dir")
    to_hf.add_argument("--max-shard-size", default="5GB", help="split model.safetensors above this size (default 5GB)")
    from_gguf = [sub.add_parser(f"gguf-to-{kind}", help=f"GGUF file (llama.cpp) or a named model -> {what}")
                 for kind, what in (("orbax", "Orbax checkpoint"), ("hf", "HF directory"))]
    for p, out in zip(from_gguf, ("ckpt_dir", "hf_dir")):
        p.add_argument("gguf_file", help="a .gguf file, or a named model such as smollm2-135m-instruct")
        p.add_argument(out)
    from_gguf[0].add_argument("--mesh", help="place tensors sharded on a DATA,FSDP,TENSOR mesh (e.g. 1,-1,1)")
    from_gguf[1].add_argument("--max-shard-size", default="5GB", help="split model.safetensors above this size")
    for p in (to_orbax, to_hf, *from_gguf):
        p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                       help="cast the weights (default: keep each tensor's stored dtype)")
        p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    """Convert in the requested direction and print a one-line summary."""
    from synthflaw_jax import convert

    start = time.perf_counter()
    progress = not args.no_progress
    if args.direction.startswith("gguf-to-"):
        from synthflaw_jax import gguf_import

        out = gguf_import.convert_cli(args, mesh=parse_mesh(getattr(args, "mesh", None)),
                                      max_shard_bytes=parse_size(getattr(args, "max_shard_size", "5GB")))
        src = args.gguf_file
    elif args.direction == "hf-to-orbax":
        out = convert.hf_to_orbax(args.hf_dir, args.ckpt_dir, dtype=args.dtype, mesh=parse_mesh(args.mesh),
                                  overwrite=args.overwrite, progress=progress)
        src = args.hf_dir
    else:
        out = convert.orbax_to_hf(args.ckpt_dir, args.hf_dir, dtype=args.dtype, overwrite=args.overwrite,
                                  max_shard_bytes=parse_size(args.max_shard_size), progress=progress)
        src = args.ckpt_dir
    print(f"converted {src} -> {out} ({args.direction}) in {time.perf_counter() - start:.1f}s")
    return 0
