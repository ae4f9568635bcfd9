"""The vLLM importer against saved completions responses written from vLLM's description of `routed_experts`
(per choice, base64 of a `.npy` array [forwarded tokens, layers, top_k]; usage counts the tokens), not produced by
the importer."""
import base64
import gzip
import json
import os
import unittest

from helpers import FolderTest, HAVE_MOESIM, NO_MOESIM, accesses, npy, replay, write_json
from moesim_trace import cli, vllm
from moesim_trace.trace import TraceError

# Request A: 3 prompt tokens, 3 generated: 5 forwarded rows of 2 layers, top-2 over 6 experts.
A = [[[0, 1], [2, 3]], [[4, 5], [0, 2]], [[1, 0], [3, 5]], [[2, 4], [5, 1]], [[3, 0], [4, 2]]]
# Request B, two choices of one prompt of 2 tokens: 3 and 2 generated (their token_ids say so).
B0 = [[[5, 4], [1, 0]], [[0, 3], [2, 1]], [[1, 2], [0, 4]], [[3, 1], [5, 2]]]
B1 = [[[5, 4], [1, 0]], [[0, 3], [2, 1]], [[4, 0], [3, 2]]]


def encoded(grid, descr="<i2", code="h"):
    flat = [i for t in grid for l in t for i in l]
    return base64.b64encode(npy((len(grid), len(grid[0]), len(grid[0][0])), flat, descr, code)).decode()


def response(choices, prompt, completion):
    return {"id": "cmpl-1", "object": "text_completion", "model": "m", "choices": choices,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


class VLLMImportTests(FolderTest):
    def write(self, name, data):
        return write_json(self.dir, name, data)

    def fixtures(self):
        a = self.write("a.json", response([{"index": 0, "text": "…", "routed_experts": encoded(A), "finish_reason": "length"}], 3, 3))
        b = self.write("b.json", [response([{"index": 0, "token_ids": [7, 8, 9], "routed_experts": encoded(B0, "<i4", "i")},
                                            {"index": 1, "token_ids": [7, 8], "routed_experts": B1}], 2, 5)])
        return a, b

    def test_every_field_of_the_trace(self):
        a, b = self.fixtures()
        self.assertEqual(cli.main(["import", "vllm", a, b, "--experts", "6", "--model", "tiny", "--out", self.out]), 0)
        with gzip.open(self.out, "rt") as f:
            header, *tokens = [json.loads(line) for line in f]
        self.assertEqual((header["layers"], header["experts"], header["top_k"], header["model"]), (2, 6, 2, "tiny"))
        self.assertIn("vLLM", header["source"])
        self.assertEqual([(t["seq"], t["pos"], t["phase"]) for t in tokens],
                         [(0, 0, "prefill"), (0, 1, "prefill"), (0, 2, "prefill"), (0, 3, "decode"), (0, 4, "decode"),
                          (1, 0, "prefill"), (1, 1, "prefill"), (1, 2, "decode"), (1, 3, "decode"),
                          (2, 0, "prefill"), (2, 1, "prefill"), (2, 2, "decode")])
        self.assertEqual([t["experts"] for t in tokens], A + B0 + B1)
        self.assertTrue(all("weights" not in t and "pred" not in t for t in tokens))

    @unittest.skipUnless(HAVE_MOESIM, NO_MOESIM)
    def test_round_trip_through_moesim(self):
        a, b = self.fixtures()
        cli.main(["import", "vllm", a, b, "--experts", "6", "--out", self.out])
        row = replay(self, self.out, layers=2, experts=6, folder=self.dir)
        self.assertEqual(int(row["accesses"]), accesses(A, 3, [0, 1]) + accesses(B0, 2, [0, 1]) + accesses(B1, 2, [0, 1]))
        self.assertEqual(int(row["tokens"]), 12)

    def test_bad_input_names_the_file_and_field_and_writes_nothing(self):
        one = lambda grid, prompt, completion: response([{"routed_experts": encoded(grid)}], prompt, completion)  # noqa: E731
        cases = {
            "sglang.json": ({"meta_info": {"routed_experts": ""}}, "field 'choices' missing"),
            "no-usage.json": ({"choices": [{"routed_experts": encoded(A)}]}, "field 'usage.prompt_tokens'"),
            "not-served.json": (response([{"text": "x"}], 3, 3), "field 'choices[0].routed_experts' missing"),
            "not-npy.json": (response([{"routed_experts": base64.b64encode(b"PK\x03\x04zip").decode()}], 3, 3), "not a .npy array"),
            "ragged.json": (response([{"routed_experts": [[[0, 1], [2, 3]], [[0, 1]]]}], 1, 2), "token 1: not a list of 2 layers (ragged)"),
            "range.json": (one([[[0, 6], [1, 2]]], 1, 1), "expert id 6 out of range 0..<6"),
            "padding.json": (one([[[0, -1], [1, 2]]], 1, 1), "-1 padding beside expert ids"),
            "counts.json": (one(A, 4, 4), "5 tokens of routing for 4 prompt and 4 generated tokens"),
            "dense.json": (one([[[-1, -1], [-1, -1]]], 1, 1), "not a MoE model's routing"),
        }
        for name, (data, message) in cases.items():
            path = self.write(name, data)
            with self.subTest(name):
                self.assertRefused(lambda: vllm.import_responses([path], 6), path, message,
                                   ["import", "vllm", path, "--experts", "6"])


if __name__ == "__main__":
    unittest.main()
