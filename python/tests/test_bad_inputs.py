"""Every importer over a corpus of bad inputs (issue 25, items 9-12): each gets one line naming the file and field,
exit 1, nothing written; none reaches a Python traceback, none allocates beyond what its file holds, and none
turns a number that is not a whole expert id into one."""
import base64
import contextlib
import io
import json
import os
import stat
import struct
import sys
import time
import unittest

from helpers import FolderTest, npy
from moesim_trace import cli

try:
    import torch
except ImportError:
    torch = None
try:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:
    pa = None


def run(argv):
    """(exit status, stderr) of the CLI in this process; an exception escaping `main` is a traceback a user would see."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli.main(argv)
        except SystemExit as e:  # argparse's own refusals (exit 2, one usage line)
            status = e.code
    return status, err.getvalue()


def deep(depth):
    """JSON text of `depth` nested lists."""
    return "[" * depth + "]" * depth


class BadInputCorpusTests(FolderTest):
    def file(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return path

    def assertOneLineRefusal(self, argv, *fragments):
        """Exit 1, a last stderr line starting `moesim-trace: error:` that holds every fragment (lines before it are
        progress), and no trace written."""
        status, err = run(argv + ["--out", self.out])
        self.assertEqual(status, 1, f"{argv}: {err}")
        lines = err.split("\n")[:-1]  # progress lines, then the error; a control character must not break one
        self.assertTrue(lines and lines[-1].startswith("moesim-trace: error: ") and "Traceback" not in err
                        and len(err.splitlines()) == len(lines), f"{argv}: {err!r}")
        err = lines[-1]
        for fragment in fragments:
            self.assertIn(fragment, err, argv)
        self.assertFalse(os.path.exists(self.out), argv)
        self.assertEqual([n for n in os.listdir(self.dir) if n.startswith(".moesim-trace-")], [], "a temporary file left")

    # --- .npy (item 9, 12) ---
    def test_npy(self):
        zero = self.file("zero.npy", npy((10**12, 10**12, 0), []))
        self.assertLess(os.path.getsize(zero), 200)
        started = time.monotonic()
        self.assertOneLineRefusal(["import", "npy", zero, "--prompt-tokens", "1", "--experts", "8"], zero, "field 'shape'", "tokens 1000000000000")
        self.assertLess(time.monotonic() - started, 5, "a tiny file must be refused before anything is allocated")
        cases = [
            (npy((True, True, True), [0], code="i"), "field 'shape'"),
            (npy((2, 0, 2), []), "layers 0"),
            (npy((0, 2, 2), []), "tokens 0"),
            (npy((1, 2, 2), [0.5, 1.0, 2.0, 3.0], descr="<f4", code="f"), "field 'descr'"),
            (npy((2, 2, 2), [0, 1, 2, 3]), "field 'data'"),
            (b"NOTNUMPY" + bytes(20), "no \\x93NUMPY magic"),
            (b"\x93NUMPY\x01\x00\x08\x00garbage!", "field 'header'"),
        ]
        for n, (data, fragment) in enumerate(cases):
            path = self.file(f"bad{n}.npy", data)
            self.assertOneLineRefusal(["import", "npy", path, "--prompt-tokens", "1", "--experts", "8"], path, fragment)
        good = self.file("good.npy", npy((1, 1, 2), [0, 1]))
        self.assertOneLineRefusal(["import", "npy", good, "--prompt-tokens", "1", "--experts", "-5"], "--experts", "1..65534")
        self.assertOneLineRefusal(["import", "npy", good, "--prompt-tokens", "-1", "--experts", "4"], "--prompt-tokens")

    # --- vLLM responses (items 9, 10, 12) ---
    def test_vllm(self):
        def response(routed):
            return json.dumps({"choices": [{"routed_experts": routed}], "usage": {"prompt_tokens": 1}})
        zero = base64.b64encode(npy((10**12, 10**12, 0), [])).decode()
        cases = [
            (response(zero), "field 'shape'"),
            (deep(100_000), "nested too deeply"),
            (b"\xff\xfe{\"choices\": []}", "cannot read"),
            (response(12), "expected base64"),
            (response([[[0.5, 1]]]), "is not an expert id"),
            (response([[[True, 1]]]), "is not an expert id"),
            (json.dumps({"choices": [], "usage": {"prompt_tokens": 1}}), "field 'choices'"),
            (response("not base64!"), "not base64"),
            (response([[[0, 10**30]]]), f"expert id {10**30} out of range"),  # past 64 bits
            (response([[[-1, -10**30]]]), f"-1 padding beside expert ids [-1, {-10**30}]"),
        ]
        for n, (text, fragment) in enumerate(cases):
            path = self.file(f"r{n}.json", text)
            self.assertOneLineRefusal(["import", "vllm", path, "--experts", "8"], path, fragment)

    # --- SGLang responses (item 10) ---
    def test_sglang(self):
        ok = self.file("ok.json", json.dumps({"meta_info": {"routed_experts": [0, 1, 2, 3], "prompt_tokens": 1,
                                                            "completion_tokens": 0}}))
        self.assertOneLineRefusal(["import", "sglang", ok, "--layers", "0", "--top-k", "2", "--experts", "8"], "--layers")
        self.assertOneLineRefusal(["import", "sglang", ok, "--layers", "2", "--top-k", "0", "--experts", "8"], "--top-k")
        cases = [
            (deep(100_000), "nested too deeply"),
            (json.dumps({"meta_info": {"routed_experts": "AAA=", "prompt_tokens": 1, "completion_tokens": 0}}), "not a whole number of int32"),
            (json.dumps({"meta_info": {"routed_experts": [0, 1.5, 2, 3], "prompt_tokens": 1, "completion_tokens": 0}}), "is not an expert id"),
            (json.dumps({"meta_info": {"routed_experts": [0, 1, 2, 3], "prompt_tokens": True, "completion_tokens": 0}}), "prompt_tokens"),
            (json.dumps({"meta_info": {"routed_experts": [0, 1, 2, 3], "prompt_tokens": 1}}), "completion_tokens"),
            (json.dumps({"meta_info": {"routed_experts": [0, 1, 2, 10**30], "prompt_tokens": 1, "completion_tokens": 0}}),
             f"expert id {10**30} out of range"),
        ]
        for n, (text, fragment) in enumerate(cases):
            path = self.file(f"s{n}.json", text)
            self.assertOneLineRefusal(["import", "sglang", path, "--layers", "2", "--top-k", "2", "--experts", "8"], path, fragment)

    # --- Megatron router traces (items 10, 12) ---
    def test_megatron(self):
        record = {"step": 0, "block": "decoder", "layer": 0, "num_tokens": 1, "top_indices": [[0, 1]]}
        cases = [
            (b"\xff\xfe\xfd\n", "not UTF-8"),
            (deep(100_000) + "\n", "nested too deeply"),
            (json.dumps(dict(record, top_indices=[[0.5, 1]])) + "\n", "are not expert ids"),
            (json.dumps(dict(record, step=True)) + "\n", "field 'step'"),
            (json.dumps(dict(record, layer=-1)) + "\n", "field 'layer'"),
            (json.dumps(dict(record, num_tokens=5)) + "\n", "field 'num_tokens'"),
            ("{not json\n", "not JSON"),
        ]
        for n, (text, fragment) in enumerate(cases):
            path = self.file(f"router_trace_rank{n}.jsonl", text)
            self.assertOneLineRefusal(["import", "megatron", path, "--experts", "8"], path, fragment)
        good = self.file("good.jsonl", json.dumps(record) + "\n")
        self.assertOneLineRefusal(["import", "megatron", good, "--experts", "8", "--batch", "0"], "--batch")

    # --- SGLang recorder dumps (items 10, 12) ---
    @unittest.skipIf(torch is None, "needs torch")
    def test_sglang_dump(self):
        ids = torch.full((2, 1, 8), -1, dtype=torch.int32)
        ids[:, 0, :2] = torch.tensor([0, 1])
        record = {"rank": 0, "forward_mode": 1, "positions": [0], "extend_seq_lens": [1], "topk_ids_of_layer": ids}
        mapping = torch.tensor([[0, 1, 2, 3]] * 2)
        huge = torch.zeros(1, dtype=torch.int32).expand(2, 10**6, 10**4)  # 2 × 10^10 values over one stored value
        cases = [
            (dict(record, forward_mode=torch.tensor(1)), "field 'forward_mode'"),
            (dict(record, forward_mode=True), "field 'forward_mode'"),
            (dict(record, topk_ids_of_layer=ids.float() + 0.7), "field 'topk_ids_of_layer'"),
            (dict(record, positions=[0.5]), "field 'positions'"),
            (dict(record, positions=torch.tensor([0])), "field 'positions'"),
            (dict(record, extend_seq_lens=["1"]), "field 'extend_seq_lens'"),
            (dict(record, rank=torch.tensor(0)), "field 'rank'"),
            (dict(record, topk_ids_of_layer=huge), "more values than the file stores"),
            (dict(record, topk_ids_of_layer=ids[0]), "field 'topk_ids_of_layer'"),
        ]
        for n, (bad, fragment) in enumerate(cases):
            path = os.path.join(self.dir, f"expert_distribution_recorder_{n}.pt")
            torch.save({"records": [bad], "last_physical_to_logical_map": mapping}, path)
            self.assertOneLineRefusal(["import", "sglang-dump", path, "--experts", "4"], path, fragment)
        path = os.path.join(self.dir, "expert_distribution_recorder_map.pt")
        torch.save({"records": [record], "last_physical_to_logical_map": mapping.float()}, path)
        self.assertOneLineRefusal(["import", "sglang-dump", path, "--experts", "4"], "last_physical_to_logical_map")
        text = self.file("expert_distribution_recorder_text.pt", "not a torch file")
        self.assertOneLineRefusal(["import", "sglang-dump", text, "--experts", "4"], text, "not a torch.save file")

    # --- Parquet (items 10, 12) ---
    @unittest.skipIf(pa is None, "needs pyarrow")
    def test_parquet(self):
        def folder(name, table):
            path = os.path.join(self.dir, name)
            os.mkdir(path)
            pq.write_table(table, os.path.join(path, "layer_00.parquet"))
            return path
        scores = pa.array([[0.6, 0.3]], type=pa.list_(pa.float32()))
        cases = [
            (pa.table({"indices": pa.array([[1.7, 0.0]], type=pa.list_(pa.float64())), "scores": scores}), "field 'indices'"),
            (pa.table({"indices": pa.array([["a", "b"]]), "scores": scores}), "field 'indices'"),
            (pa.table({"indices": pa.array([[0, 1]], type=pa.list_(pa.int16())), "scores": pa.array([["x", "y"]])}), "field 'scores'"),
            (pa.table({"indices": pa.array([3], type=pa.int16()), "scores": scores}), "field 'indices'"),
            (pa.table({"indices": pa.array([[0, None]], type=pa.list_(pa.int16())), "scores": scores}), "a null id"),
            (pa.table({"indices": pa.array([[0, 1]], type=pa.list_(pa.int16())),
                       "scores": pa.array([[float("nan"), 0.1]], type=pa.list_(pa.float32()))}), "field 'scores'"),
        ]
        for n, (table, fragment) in enumerate(cases):
            path = folder(f"p{n}", table)
            self.assertOneLineRefusal(["import", "parquet", path, "--experts", "8", "--seq-len", "1"], fragment)
        odd = folder("odd", pa.table({"indices": pa.array([[0, 1]], type=pa.list_(pa.int16())), "sc\x0bres\r": scores}))
        self.assertOneLineRefusal(["import", "parquet", odd, "--experts", "8", "--seq-len", "1"], "sc\\x0bres\\r")
        os.mkdir(os.path.join(self.dir, "text"))
        self.file("text/layer_00.parquet", "not parquet")
        self.assertOneLineRefusal(["import", "parquet", os.path.join(self.dir, "text"), "--experts", "8", "--seq-len", "1"],
                                  "not a Parquet file")
        good = folder("good", pa.table({"indices": pa.array([[0, 1]], type=pa.list_(pa.int16())), "scores": scores}))
        self.assertOneLineRefusal(["import", "parquet", good, "--experts", "8", "--seq-len", "0"], "--seq-len")

    # --- outputs (items 10, 11) ---
    def test_outputs(self):
        good = self.file("good.npy", npy((1, 1, 2), [0, 1]))
        argv = ["import", "npy", good, "--prompt-tokens", "1", "--experts", "4"]

        def refused(out, *fragments):
            status, err = run(argv + ["--out", out])
            self.assertEqual(status, 1, err)
            self.assertTrue(err.startswith("moesim-trace: error: ") and err.count("\n") == 1, err)
            for fragment in fragments:
                self.assertIn(fragment, err)

        refused(self.dir, "is a directory")
        refused(os.path.join(self.dir, "t.moet"), "moesim trace convert")
        os.symlink("nowhere.jsonl", os.path.join(self.dir, "dangling.jsonl"))
        refused(os.path.join(self.dir, "dangling.jsonl"), "a link to a file that does not exist")
        if os.geteuid() != 0:  # root writes anywhere
            locked = os.path.join(self.dir, "locked")
            os.mkdir(locked, 0o500)
            refused(os.path.join(locked, "t.jsonl"), "cannot write")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "t.moet")))
        # A missing folder is created; a device is written through; a link's file is replaced and the link kept.
        self.assertEqual(run(argv + ["--out", os.path.join(self.dir, "new", "deeper", "t.jsonl")])[0], 0)
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "new", "deeper", "t.jsonl")))
        self.assertEqual(run(argv + ["--out", os.devnull])[0], 0)
        self.assertTrue(stat.S_ISCHR(os.stat(os.devnull).st_mode))
        with open(os.path.join(self.dir, "target.jsonl"), "w") as f:
            f.write("old")
        os.symlink("target.jsonl", os.path.join(self.dir, "link.jsonl"))
        self.assertEqual(run(argv + ["--out", os.path.join(self.dir, "link.jsonl")])[0], 0)
        self.assertTrue(os.path.islink(os.path.join(self.dir, "link.jsonl")))
        with open(os.path.join(self.dir, "target.jsonl")) as f:
            self.assertIn("moe-routing-trace", f.readline())


if __name__ == "__main__":
    unittest.main()
