"""Megatron-Core's router trace (`--moe-routing-trace-path DIR`, megatron/core/transformer/moe/router_trace.py):
JSON Lines `router_trace_rank{R}.jsonl`, one record per (step, block, layer):
`{"step": 0, "stage": "pre_dispatch", "block": "decoder", "layer": 3, "rank": 0, "num_tokens": 128, "topk": 2,
"top_indices": [[12, 45], …]}`; MTP records carry `mtp_idx` and are left out here.

A step is one forward pass. Megatron lays hidden states out sequence first, [s, b, h], and the router flattens them,
so row i of a step belongs to request i mod b at position i div b (`--batch b`, default 1). A step of one row per
request continues the previous step's requests as decode tokens (inference with a KV cache); a step of more starts b
new sequences, its rows their prefill (an inference prompt, or a training micro-batch). Several files (ranks) may be
given: records of the same step and layer must then agree (tensor- or expert-parallel ranks see the same tokens).
"""
import json

from .routing import build, check_grid
from .trace import TraceError


def _records(path):
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise TraceError(f"{path}: cannot read: {e}") from None
    with f:
        number = 0
        while True:
            number += 1
            where = f"{path}:{number}"
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise TraceError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start} of the read)") from None
            if not line:
                return
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise TraceError(f"{where}: not JSON ({e.msg})") from None
            except RecursionError:
                raise TraceError(f"{where}: JSON nested too deeply to be a router trace record") from None
            if not isinstance(record, dict) or "top_indices" not in record:
                raise TraceError(f"{where}: field 'top_indices' missing: not a Megatron-Core router trace record")
            if "mtp_idx" in record or record.get("block", "decoder") != "decoder":
                continue
            for key in ("step", "layer"):
                if not isinstance(record.get(key), int) or isinstance(record.get(key), bool) or record[key] < 0:
                    raise TraceError(f"{where}: field '{key}' missing or not a count")
            yield where, record


def _steps(paths):
    """({step: {layer: (where, rows)}}, top_k) of every file's decoder records; ranks' copies must agree."""
    steps, top_k = {}, None
    for path in paths:
        for where, record in _records(path):
            rows = record["top_indices"]
            if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
                raise TraceError(f"{where}: field 'top_indices': not a list of per-token id lists")
            if top_k is None:
                top_k = len(rows[0])
            for t, r in enumerate(rows):
                if len(r) != top_k:
                    raise TraceError(f"{where}: field 'top_indices': token {t} has {len(r)} ids, top-k is {top_k} (ragged)")
                if not all(isinstance(i, int) and not isinstance(i, bool) for i in r):
                    raise TraceError(f"{where}: field 'top_indices': token {t}: {r} are not expert ids")
            if "num_tokens" in record and record["num_tokens"] != len(rows):
                raise TraceError(f"{where}: field 'num_tokens': {record['num_tokens']}, but top_indices has {len(rows)} rows")
            layer = steps.setdefault(record["step"], {})
            if record["layer"] in layer:
                if layer[record["layer"]][1] != rows:
                    raise TraceError(f"{where}: step {record['step']}, layer {record['layer']} differs from {layer[record['layer']][0]} "
                                     "(ranks that see different tokens: import one rank's file)")
                continue
            layer[record["layer"]] = (where, rows)
    if not steps:
        raise TraceError(f"{', '.join(paths)}: no decoder records")
    return steps, top_k


def import_traces(paths, experts, batch=1, model=None):
    """A TraceBuilder from router trace files; `batch` requests per step (see the module's note)."""
    if batch < 1:
        raise TraceError(f"--batch {batch}: must be at least 1")
    steps, top_k = _steps(paths)
    layer_ids = sorted({l for layers in steps.values() for l in layers})
    sequences = []  # (where, prefill rows, grid) per request
    current = []
    for step in sorted(steps):
        layers = steps[step]
        missing = [l for l in layer_ids if l not in layers]
        if missing:
            raise TraceError(f"{layers[min(layers)][0]}: step {step}: layer {missing[0]} missing (every step must record "
                             f"layers {layer_ids[0]}..{layer_ids[-1]})")
        counts = {len(rows) for _, rows in layers.values()}
        if len(counts) != 1:
            raise TraceError(f"{layers[min(layers)][0]}: step {step}: layers record different token counts {sorted(counts)}")
        tokens = counts.pop()
        if tokens % batch:
            raise TraceError(f"{layers[min(layers)][0]}: step {step}: {tokens} tokens are not a whole number of positions "
                             f"for --batch {batch}")
        length = tokens // batch
        where = layers[min(layers)][0]
        if length == 1 and current:
            for b, seq in enumerate(current):
                seq[2].append([layers[l][1][b] for l in layer_ids])
            continue
        current = []
        for b in range(batch):
            grid = [[layers[l][1][s * batch + b] for l in layer_ids] for s in range(length)]
            current.append((f"{where}: step {step}, request {b}", length, grid))
        sequences.extend(current)
    requests = []
    for where, prefill, grid in sequences:
        check_grid(grid, experts, where)
        requests.append((where, 0, prefill, grid))
    notes = f"Megatron layers {layer_ids}" if layer_ids != list(range(len(layer_ids))) else ""
    builder = build(requests, len(layer_ids), experts, top_k, model, "Megatron-Core router trace: " + ", ".join(paths))
    if notes:
        builder.header["notes"] = "; ".join(n for n in (builder.header.get("notes"), notes) if n)
    return builder
