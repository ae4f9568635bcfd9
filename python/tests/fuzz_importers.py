"""A seeded mutation fuzzer of moesim-trace's importers: each execution mutates a valid input of one importer (bytes
flipped, cut, repeated or spliced; in JSON, a value swapped for another type, a sign, a fraction, a huge number or a
deep nesting), runs the CLI on it in this process, and fails on a Python exception escaping `main` (a traceback a
user would see), an execution over 20 s (a hang or a runaway allocation), an exit status other than 0 or 1, or a
trace written that moesim's rules refuse (ids not whole numbers in range, repeated ids in a cell, a shape off the
header). The unit test runs a few hundred executions per importer; the long run:

    python3 python/tests/fuzz_importers.py --execs 100000 [--importer npy] [--seed 1]
"""
import argparse
import base64
import contextlib
import gzip
import io
import json
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import npy  # noqa: E402
from moesim_trace import cli  # noqa: E402

GRID = [[[0, 1], [2, 3]], [[1, 3], [-1, -1]], [[2, 0], [3, 1]]]  # 3 tokens × 2 layers × top-2 over 4 experts
FLAT = [i for t in GRID for l in t for i in l]


def _vllm_seed():
    routed = base64.b64encode(npy((3, 2, 2), FLAT)).decode()
    return json.dumps({"choices": [{"routed_experts": routed, "token_ids": [5, 6, 7]}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 2}}).encode()


def _sglang_seed():
    return json.dumps([{"meta_info": {"routed_experts": FLAT, "prompt_tokens": 1, "completion_tokens": 2}},
                       {"meta_info": {"routed_experts": base64.b64encode(struct.pack("<4i", 0, 1, 2, 3)).decode(),
                                      "prompt_tokens": 1, "completion_tokens": 0}}]).encode()


def _megatron_seed():
    lines = [json.dumps({"step": s, "stage": "pre_dispatch", "block": "decoder", "layer": l, "rank": 0,
                         "num_tokens": 1, "topk": 2, "top_indices": [GRID[s][l]] if GRID[s][l][0] != -1 else [[0, 1]]})
             for s in range(3) for l in range(2)]
    return ("\n".join(lines) + "\n").encode()


def _dump_seed():
    import torch
    ids = torch.full((2, 3, 8), -1, dtype=torch.int32)
    for t in range(3):
        for l in range(2):
            ids[l, t, :2] = torch.tensor(GRID[t][l] if GRID[t][l][0] != -1 else [0, 1])
    buffer = io.BytesIO()
    torch.save({"records": [{"rank": 0, "forward_mode": 1, "positions": [0, 1, 2], "extend_seq_lens": [3],
                             "topk_ids_of_layer": ids}],
                "last_physical_to_logical_map": torch.tensor([[0, 1, 2, 3]] * 2)}, buffer)
    return buffer.getvalue()


def _parquet_seed():
    import pyarrow as pa
    import pyarrow.parquet as pq
    buffer = io.BytesIO()
    pq.write_table(pa.table({"indices": pa.array([[0, 1], [1, 3], [2, 0]], type=pa.list_(pa.int16())),
                             "scores": pa.array([[0.6, 0.3], [0.5, 0.4], [0.7, 0.2]], type=pa.list_(pa.float32()))}), buffer)
    return buffer.getvalue()


# importer: (seed bytes, file name, argv before the path, argv after it, whether its input is JSON text)
IMPORTERS = {
    "npy": (lambda: npy((3, 2, 2), FLAT), "a.npy", ["import", "npy"], ["--prompt-tokens", "1", "--experts", "4"], False),
    "vllm": (_vllm_seed, "r.json", ["import", "vllm"], ["--experts", "4"], True),
    "sglang": (_sglang_seed, "r.json", ["import", "sglang"], ["--layers", "2", "--top-k", "2", "--experts", "4"], True),
    "megatron": (_megatron_seed, "router_trace_rank0.jsonl", ["import", "megatron"], ["--experts", "4"], True),
    "sglang-dump": (_dump_seed, "expert_distribution_recorder_0.pt", ["import", "sglang-dump"], ["--experts", "4"], False),
    "parquet": (_parquet_seed, "layer_00.parquet", ["import", "parquet"], ["--experts", "4", "--seq-len", "2"], False),
}

_ODD_VALUES = [-1, -5, 0, 1.7, 0.5, True, False, None, "x", 2**31, 2**64, 10**12, -(2**63), 1e308, float("inf"),
               [], {}, [[[[]]]], [0, 0], 65535, 65536]


def _mutate_json(data, rng):
    """A JSON value of `data` swapped for an odd one, a list emptied or doubled, a key dropped."""
    def walk(node, depth=0):
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            roll = rng.random()
            if roll < 0.15:
                del node[key]
            elif roll < 0.55 or depth > 6:
                node[key] = rng.choice(_ODD_VALUES)
            else:
                walk(node[key], depth + 1)
        elif isinstance(node, list) and node:
            i = rng.randrange(len(node))
            roll = rng.random()
            if roll < 0.1:
                node.clear()
            elif roll < 0.2:
                node.extend(node)
            elif roll < 0.6 or depth > 6:
                node[i] = rng.choice(_ODD_VALUES)
            else:
                walk(node[i], depth + 1)
    walk(data)
    return data


def mutate(seed, is_json, rng):
    """One mutation of the seed bytes."""
    if is_json and rng.random() < 0.5:
        lines = seed.decode().splitlines()
        n = rng.randrange(len(lines))
        try:
            value = _mutate_json(json.loads(lines[n]), rng)
            lines[n] = json.dumps(value, allow_nan=True)
        except (ValueError, RecursionError):
            pass
        if rng.random() < 0.05:
            lines[n] = "[" * 50_000 + "]" * 50_000
        return ("\n".join(lines) + "\n").encode()
    data = bytearray(seed)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        roll = rng.random()
        at = rng.randrange(len(data)) if data else 0
        if roll < 0.4 and data:
            data[at] = rng.randrange(256)
        elif roll < 0.55 and data:
            del data[at:at + rng.randrange(1, 64)]
        elif roll < 0.7:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        elif roll < 0.8 and data:
            data[at:at] = data[at:at + rng.randrange(1, 256)]
        elif roll < 0.9 and data:
            width = rng.choice([1, 2, 4, 8])
            if at + width <= len(data):
                data[at:at + width] = rng.choice([b"\xff" * width, b"\x00" * width, b"\x7f" + b"\xff" * (width - 1)])
        elif data:
            del data[at:]
    return bytes(data)


class Hang(Exception):
    pass


def _check_written(path):
    """A trace written must follow moesim's rules: whole ids in range, distinct in a cell, shaped like the header."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        header = json.loads(f.readline())
        layers, experts, top_k = header["layers"], header["experts"], header["top_k"]
        for line in f:
            token = json.loads(line)
            assert len(token["experts"]) == layers, f"{len(token['experts'])} layers of {layers}"
            for cell in token["experts"]:
                if cell is None:
                    continue
                assert len(cell) == top_k and len(set(cell)) == top_k, f"cell {cell}"
                assert all(type(i) is int and 0 <= i < experts for i in cell), f"ids {cell}"


def fuzz(importer, execs, seed=1, time_limit=20, report=print):
    """Runs `execs` mutated inputs through `importer`; returns (outcomes, failures) with failures as (exec, reason)."""
    make_seed, name, before, after, is_json = IMPORTERS[importer]
    original = make_seed()
    rng = random.Random(f"{importer}:{seed}")
    folder = tempfile.mkdtemp(prefix="moesim-fuzz-")
    outcomes, failures = {"accepted": 0, "refused": 0}, []
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(Hang()))
    started = time.monotonic()
    try:
        for n in range(execs):
            case = os.path.join(folder, "case")
            shutil.rmtree(case, ignore_errors=True)
            os.mkdir(case)
            data = mutate(original, is_json, rng)
            with open(os.path.join(case, name), "wb") as f:
                f.write(data)
            target = case if importer == "parquet" else os.path.join(case, name)
            out = os.path.join(case, "out.jsonl")
            err = io.StringIO()
            signal.alarm(time_limit)
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    status = cli.main(before + [target] + after + ["--out", out])
            except Hang:
                failures.append((n, f"over {time_limit} s"))
                continue
            except BaseException as e:  # a traceback a user would see
                failures.append((n, f"{type(e).__name__}: {e}"[:300]))
                continue
            finally:
                signal.alarm(0)
            if status == 0:
                outcomes["accepted"] += 1
                try:
                    _check_written(out)
                except (AssertionError, ValueError, KeyError) as e:
                    failures.append((n, f"wrote a trace moesim refuses: {e}"))
            elif status == 1 and err.getvalue().splitlines() and err.getvalue().splitlines()[-1].startswith("moesim-trace: error: "):
                outcomes["refused"] += 1
                if os.path.exists(out):
                    failures.append((n, "refused but wrote its output"))
            else:
                failures.append((n, f"exit {status}: {err.getvalue()[-300:]!r}"))
            if report and (n + 1) % 10000 == 0:
                report(f"{importer}: {n + 1}/{execs} executions, {len(failures)} failures, {time.monotonic() - started:.0f} s")
    finally:
        signal.signal(signal.SIGALRM, previous)
        shutil.rmtree(folder, ignore_errors=True)
    return outcomes, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--execs", type=int, default=100000, help="executions per importer (default 100000)")
    parser.add_argument("--importer", choices=sorted(IMPORTERS), action="append", help="one importer (default all)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    bad = 0
    for importer in args.importer or sorted(IMPORTERS):
        started = time.monotonic()
        outcomes, failures = fuzz(importer, args.execs, args.seed, report=lambda line: print(line, flush=True))
        bad += len(failures)
        print(f"{importer}: {args.execs} executions in {time.monotonic() - started:.0f} s: {outcomes['accepted']} accepted, "
              f"{outcomes['refused']} refused with one line, {len(failures)} failures", flush=True)
        for n, reason in failures[:10]:
            print(f"  exec {n}: {reason}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
