"""`prefixrl merge`: the trace stores of a sharded collection (`collect --shard I/N`) joined into one.

A shard collects every N-th problem of the selection from the I-th, and each problem's draws depend only
on (seed, problem id, attempt) (`prefixrl.data.collect`), so the shards hold exactly what one unsharded
collection would. The merge puts them back in that collection's order: problems by their place in the
selection (shard I's j-th problem is the selection's (j·N + I)-th), traces by the sample that found them
and then by place, which is the order a single collection finds them in. It refuses, in one line, shards
that are not one collection's: other settings (model, rendering, tokenizer, cap, sampling, seed,
selection), a shard twice or missing, a shard not finished, or a problem in two shards.
"""

from __future__ import annotations

from pathlib import Path

from prefixrl.data.traces import TRACE_SCHEMA
from prefixrl.io.errors import BadInput
from prefixrl.io.store import read_store
from prefixrl.rollout.flops import Ledger


def merge_shards(paths: list[Path]) -> tuple[list[dict], dict]:
    """(rows, metadata) of the unsharded collection the shard stores at `paths` make up."""
    shards = {}  # index -> (path, rows, state)
    first = None
    for path in paths:
        rows, meta = read_store(path, TRACE_SCHEMA)
        state = meta.get("collection") or {}
        spec = state.get("key", {}).get("shard")
        if spec is None or "samples" not in state:
            raise BadInput(f"{path}: not a shard of a sampled collection (made by `prefixrl collect --shard I/N`)")
        if not state["finished"]:
            raise BadInput(f"{path}: shard {spec} is not finished; continue it with the same command and --resume")
        index, count = map(int, spec.split("/"))
        if first is None:
            first = (path, meta, count)
        _check_same_collection(path, meta, first)
        if index in shards:
            raise BadInput(f"{path}: shard {spec} is given twice (also {shards[index][0]})")
        shards[index] = (path, rows, state)
    count = first[2]
    missing = [f"{i}/{count}" for i in range(count) if i not in shards]
    if missing:
        raise BadInput(f"shard {missing[0]} is missing: a merge needs all {count} shards of the collection "
                       f"({len(shards)} given)")
    position, owner = {}, {}
    for index in range(count):
        path, rows, state = shards[index]
        for j, pid in enumerate(state["samples"]):
            if pid in owner:
                raise BadInput(f"{path}: problem {pid} is in two shards (also {owner[pid]}): shards of different "
                               "collections")
            owner[pid], position[pid] = path, j * count + index
    order = sorted(position, key=position.get)
    states = [shards[i][2] for i in range(count)]
    samples = {pid: s["samples"][pid] for s in states for pid in s["samples"]}
    flops = {pid: s["flops"][pid] for s in states for pid in s["flops"]}
    ledger = Ledger()
    for s in states:
        for category, value in s["ledger"].items():
            ledger.add(category, value)
    rows = sorted((r for i in range(count) for r in shards[i][1]), key=lambda r: (r["samples"], position[r["problem_id"]]))
    key = {k: v for k, v in states[0]["key"].items() if k != "shard"}
    collection = {"key": key, "finished": True, "samples": {pid: samples[pid] for pid in order},
                  "flops": {pid: flops[pid] for pid in order}, "ledger": ledger.to_dict()}
    meta = {k: v for k, v in first[1].items() if k != "collection"}
    return rows, {"collection": collection, **meta}


def _check_same_collection(path: Path, meta: dict, first: tuple) -> None:
    """Everything but the shard index agrees: the collection's settings and selection, the rendering, the task."""
    other_path, other, _ = first
    key, theirs = meta["collection"]["key"], other["collection"]["key"]
    diff = [k for k in sorted(set(key) | set(theirs)) if k != "shard" and key.get(k) != theirs.get(k)]
    if key["shard"].split("/")[1] != theirs["shard"].split("/")[1]:
        diff.insert(0, "shard count")
    diff += [k for k in ("rendering", "task") if meta.get(k) != other.get(k)]
    if diff:
        raise BadInput(f"{path}: its {', '.join(diff)} differ from {other_path}'s: shards of different collections")
