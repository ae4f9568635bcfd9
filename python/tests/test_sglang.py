"""The SGLang importer against fixtures written from SGLang's description of `routed_experts` (base64 of
little-endian int32, token x layer x slot, -1 where a layer routes nothing), not produced by the importer."""
import base64
import gzip
import json
import os
import shutil
import struct
import sys
import tempfile
import unittest

# The package in this checkout, not an installed copy.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from moesim_trace import cli  # noqa: E402
from helpers import FolderTest, HAVE_MOESIM, NO_MOESIM, replay, write_json
from helpers import accesses as count_accesses  # noqa: E402


# Two requests of a 3-layer model whose layer 1 is dense (no routed expert), 4 experts, top-2.
# Request A: 2 prompt tokens, 2 generated, routing recorded for all 4 tokens.
A = [[[0, 1], [-1, -1], [2, 3]],
     [[1, 2], [-1, -1], [3, 0]],
     [[0, 1], [-1, -1], [2, 3]],
     [[3, 2], [-1, -1], [-1, -1]]]  # layer 2 unknown on the last token: a null cell
# Request B: 1 prompt token, 2 generated, the last generated token never forwarded: 2 rows.
B = [[[2, 0], [-1, -1], [1, 0]],
     [[2, 3], [-1, -1], [1, 2]]]


def response(grid, prompt, completion, as_list=False):
    flat = [i for token in grid for layer in token for i in layer]
    routed = flat if as_list else base64.b64encode(struct.pack(f"<{len(flat)}i", *flat)).decode()
    return {"text": "…", "meta_info": {"prompt_tokens": prompt, "completion_tokens": completion, "routed_experts": routed}}


class SGLangImportTests(FolderTest):
    def write(self, name, data):
        return write_json(self.dir, name, data)

    def run_cli(self, *args):
        return cli.main(list(args))

    def read(self, path):
        with gzip.open(path, "rt") as f:
            return [json.loads(line) for line in f]

    def test_every_field_of_the_trace(self):
        a = self.write("a.json", response(A, 2, 2))
        b = self.write("b.json", [response(B, 1, 2, as_list=True)])
        out = os.path.join(self.dir, "t.jsonl.gz")
        self.assertEqual(self.run_cli("import", "sglang", a, b, "--layers", "3", "--experts", "4", "--top-k", "2",
                                      "--model", "tiny", "--out", out), 0)
        lines = self.read(out)
        header = lines[0]
        self.assertEqual((header["format"], header["version"], header["layers"], header["experts"], header["top_k"], header["model"]),
                         ("moe-routing-trace", 1, 2, 4, 2, "tiny"))
        self.assertIn("SGLang", header["source"])
        self.assertIn("1 of 3 layers", header["notes"])
        tokens = lines[1:]
        self.assertEqual([(t["seq"], t["pos"], t["phase"]) for t in tokens],
                         [(0, 0, "prefill"), (0, 1, "prefill"), (0, 2, "decode"), (0, 3, "decode"),
                          (1, 0, "prefill"), (1, 1, "decode")])
        self.assertEqual([t["experts"] for t in tokens],
                         [[[0, 1], [2, 3]], [[1, 2], [3, 0]], [[0, 1], [2, 3]], [[3, 2], None],
                          [[2, 0], [1, 0]], [[2, 3], [1, 2]]])
        self.assertTrue(all("weights" not in t for t in tokens))

    @unittest.skipUnless(HAVE_MOESIM, NO_MOESIM)
    def test_round_trip_through_moesim(self):
        a = self.write("a.json", response(A, 2, 2))
        b = self.write("b.json", response(B, 1, 2))
        out = os.path.join(self.dir, "t.jsonl.gz")
        self.run_cli("import", "sglang", a, b, "--layers", "3", "--experts", "4", "--top-k", "2", "--out", out)
        row = replay(self, out, layers=2, experts=4, folder=self.dir)
        # Counted from the fixtures: layer 1 is dense, so only layers 0 and 2 are accessed.
        accesses = lambda grid, prefill: count_accesses(grid, prefill, [0, 2])  # noqa: E731
        self.assertEqual(int(row["accesses"]), accesses(A, 2) + accesses(B, 1))
        self.assertEqual(int(row["tokens"]), 6)
        self.assertEqual(int(row["missing_cells"]), 1)

    def test_bad_input_names_the_file_and_field_and_writes_nothing(self):
        out = os.path.join(self.dir, "t.jsonl.gz")
        cases = {
            "other-format.json": ({"format": "moe-routing-trace", "version": 1}, "field 'meta_info' missing"),
            "ragged.json": ({"meta_info": {"prompt_tokens": 1, "completion_tokens": 1, "routed_experts": [0, 1, 2]}}, "ragged"),
            "range.json": (response([[[0, 9], [-1, -1], [0, 1]]], 1, 0), "expert id 9 out of range 0..<4"),
            "padding.json": (response([[[0, -1], [-1, -1], [0, 1]]], 1, 0), "-1 padding beside expert ids"),
            "counts.json": (response(A, 5, 5), "4 tokens of routing for 5 prompt and 5 generated tokens"),
            "dense.json": (response([[[-1, -1], [-1, -1], [-1, -1]]], 1, 0), "not a MoE model's routing"),
        }
        for name, (data, message) in cases.items():
            path = self.write(name, data)
            with self.subTest(name):
                with self.assertRaises(Exception) as caught:
                    from moesim_trace import sglang
                    sglang.import_responses([path], 3, 4, 2)
                self.assertIn(path, str(caught.exception))
                self.assertIn(message, str(caught.exception))
                self.assertEqual(self.run_cli("import", "sglang", path, "--layers", "3", "--experts", "4", "--top-k", "2", "--out", out), 1)
                self.assertFalse(os.path.exists(out))
        self.assertEqual(os.listdir(self.dir).count("t.jsonl.gz"), 0)
        not_json = os.path.join(self.dir, "trace.jsonl")
        with open(not_json, "w") as f:
            f.write('{"format":"moe-routing-trace"}\n{"seq":0}\n')
        self.assertEqual(self.run_cli("import", "sglang", not_json, "--layers", "3", "--experts", "4", "--top-k", "2", "--out", out), 1)


class TraceWriterTests(unittest.TestCase):
    def test_checks_what_moesim_checks(self):
        from moesim_trace import TraceBuilder, TraceError
        b = TraceBuilder(layers=1, experts=4, top_k=2)
        for bad in ([[0, 0]], [[0]], [[0, 4]]):
            with self.assertRaises(TraceError):
                b.add(0, 0, "decode", bad)
        with self.assertRaises(TraceError):
            b.add(0, 0, "generate", [[0, 1]])
        b.add(0, 1, "decode", [[0, 1]])
        with self.assertRaises(TraceError):
            b.add(0, 1, "decode", [[0, 1]])  # pos must increase
        with self.assertRaises(TraceError):
            TraceBuilder(layers=1, experts=2, top_k=3)

    def test_written_atomically_with_the_usual_permissions(self):
        from moesim_trace import TraceBuilder, TraceError
        folder = tempfile.mkdtemp()
        try:
            b = TraceBuilder(layers=1, experts=4, top_k=2)
            with self.assertRaises(TraceError):
                b.write(os.path.join(folder, "empty.jsonl"))  # no tokens: nothing written
            b.add(0, 0, "decode", [[0, 1]], pred=[[2, 3]])
            with self.assertRaisesRegex(TraceError, "pred: layer 0: ids \\[4\\] repeat or are out of range"):
                b.add(0, 1, "decode", [[0, 1]], pred=[[4]])
            path = os.path.join(folder, "t.jsonl")
            b.write(path)
            umask = os.umask(0)
            os.umask(umask)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o666 & ~umask)
            self.assertEqual(sorted(os.listdir(folder)), ["t.jsonl"])
            with open(path) as f:
                self.assertEqual(json.loads(f.read().splitlines()[1])["pred"], [[2, 3]])
        finally:
            shutil.rmtree(folder)


if __name__ == "__main__":
    unittest.main()
