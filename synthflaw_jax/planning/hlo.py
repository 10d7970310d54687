"""Matmul FLOPs and collective bytes of a compiled program, read from its optimized HLO text.

XLA's `cost_analysis()` counts the body of a `while` loop once, so a step with scanned layers
(and a scan over microbatches) reports a small fraction of its real work. This walks the HLO
instead: every `dot` contributes 2 * prod(output) * prod(contracted lhs dims), every
collective its bytes on the wire per device, and a computation called from a `while` body is
multiplied by the loop's `known_trip_count`. Only matmuls are counted (elementwise work is
small next to them in a transformer and runs on other units of a TPU).
"""
from __future__ import annotations

import dataclasses
import math
import re

_DTYPE_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
    "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}
_ARRAY = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([\d,]*)\]")
_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*)$")
_TRIP = re.compile(r'"known_trip_count"\s*:\s*\{\s*"n"\s*:\s*"(\d+)"')
_COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")


@dataclasses.dataclass
class HloStats:
    """Per-device totals over one execution of the program."""

    dot_flops: float = 0.0
    collective_bytes: dict = dataclasses.field(default_factory=dict)  # op kind -> bytes per device
    collective_ops: dict = dataclasses.field(default_factory=dict)    # op kind -> executions
    loops: list = dataclasses.field(default_factory=list)             # trip counts seen
    unknown_trip_counts: int = 0

    @property
    def total_collective_bytes(self) -> float:
        """Bytes each device sends (or receives) over all collectives."""
        return float(sum(self.collective_bytes.values()))


def _arrays(type_text: str) -> list[tuple[str, list[int]]]:
    return [(d, [int(x) for x in dims.split(",") if x]) for d, dims in _ARRAY.findall(type_text)]


def _bytes(type_text: str) -> int:
    return sum(_DTYPE_BYTES[d] * math.prod(shape) for d, shape in _arrays(type_text))


def _split_type(rest: str) -> tuple[str, str]:
    """'f32[2,3]{1,0} dot(...)...' or '(f32[..], s32[]) while(...)' -> (type text, the rest)."""
    if rest.startswith("("):
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                return rest[: i + 1], rest[i + 1:].lstrip()
    head, _, tail = rest.partition(" ")
    return head, tail


def _group_size(attrs: str, num_devices: int) -> int:
    """Devices per replica group of a collective, from any of XLA's printed forms."""
    mesh = re.search(r"replica_groups=mesh\[([^\]]*)\][^{]*\{([^}]*)\}", attrs)
    if mesh:
        sizes = dict((k.strip("' "), int(v)) for k, v in (p.split("=") for p in mesh.group(1).split(",")))
        return math.prod(sizes.get(a.strip("' "), 1) for a in mesh.group(2).split(",") if a.strip())
    iota = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", attrs)
    if iota:
        return int(iota.group(2))
    explicit = re.search(r"replica_groups=\{\{([\d,\s]*)\}", attrs)
    if explicit:
        return len([x for x in explicit.group(1).split(",") if x.strip()])
    return num_devices


def _collective_bytes(kind: str, out_bytes: int, group: int) -> float:
    if group <= 1:
        return 0.0
    share = (group - 1) / group
    if kind == "all-gather":
        return out_bytes * share
    if kind == "reduce-scatter":
        return out_bytes * (group - 1)
    if kind == "all-reduce":
        return 2 * out_bytes * share
    if kind == "all-to-all":
        return out_bytes * share
    return float(out_bytes)  # collective-permute


def _parse(text: str) -> tuple[dict, str | None]:
    comps: dict[str, list[str]] = {}
    entry, current = None, None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header and not line.startswith(" "):
            current = header.group(2)
            comps[current] = []
            if header.group(1):
                entry = current
        elif line.strip() == "}":
            current = None
        elif current is not None:
            comps[current].append(line)
    return comps, entry


def analyze(text: str, num_devices: int) -> HloStats:
    """Matmul FLOPs and collective bytes per device of an optimized HLO module (`compiled.as_text()`)."""
    comps, entry = _parse(text)
    stats = HloStats()
    memo: dict[str, tuple[float, dict, dict]] = {}

    def visit(name: str, stack: tuple = ()) -> tuple[float, dict, dict]:
        if name in memo:
            return memo[name]
        if name not in comps or name in stack:
            return 0.0, {}, {}
        flops, coll, ops = 0.0, {}, {}
        types: dict[str, str] = {}
        for line in comps[name]:
            m = _INSTR.match(line)
            if not m:
                continue
            var, rest = m.groups()
            type_text, body = _split_type(rest)
            types[var] = type_text
            opcode = body.split("(", 1)[0].strip()
            if opcode == "dot":
                lhs = re.search(r"%([\w.\-]+)", body.split("(", 1)[1])
                lhs_dims = _arrays(types.get(lhs.group(1), ""))[0][1] if lhs and types.get(lhs.group(1)) else []
                contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", body)
                k = math.prod(lhs_dims[int(i)] for i in contract.group(1).split(",") if i) if contract and lhs_dims else 1
                out = _arrays(type_text)
                flops += 2.0 * (math.prod(out[0][1]) if out else 0) * k
            base = opcode.removesuffix("-start")
            if base in _COLLECTIVES and not opcode.endswith("-done"):
                out_bytes = max((_DTYPE_BYTES[d] * math.prod(s) for d, s in _arrays(type_text)), default=0) \
                    if opcode.endswith("-start") else _bytes(type_text)
                coll[base] = coll.get(base, 0.0) + _collective_bytes(base, out_bytes, _group_size(body, num_devices))
                ops[base] = ops.get(base, 0) + 1
            callees: list[tuple[str, float]] = []
            if opcode == "while":
                trip = _TRIP.search(body)
                n = int(trip.group(1)) if trip else 1
                if not trip:
                    stats.unknown_trip_counts += 1
                stats.loops.append(n)
                callees += [(c, n) for c in re.findall(r"body=%([\w.\-]+)", body)]
            else:
                for attr in ("calls", "to_apply", "true_computation", "false_computation"):
                    callees += [(c, 1) for c in re.findall(attr + r"=%([\w.\-]+)", body)]
                for group in re.findall(r"(?:calls|branch_computations)=\{([^}]*)\}", body):
                    callees += [(c, 1) for c in re.findall(r"%([\w.\-]+)", group)]
            for callee, mult in callees:
                f, c, o = visit(callee, stack + (name,))
                flops += mult * f
                for kind, b in c.items():
                    coll[kind] = coll.get(kind, 0.0) + mult * b
                for kind, n in o.items():
                    ops[kind] = ops.get(kind, 0) + mult * n
        memo[name] = (flops, coll, ops)
        return memo[name]

    if entry is not None:
        stats.dot_flops, stats.collective_bytes, stats.collective_ops = visit(entry)
    return stats
