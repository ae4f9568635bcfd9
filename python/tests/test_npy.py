"""The .npy importer against arrays written byte by byte from NumPy's format specification (NEP 1), not by numpy
or the importer."""
import gzip
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from moesim_trace import cli  # noqa: E402
from helpers import FolderTest, HAVE_MOESIM, NO_MOESIM, accesses, npy, replay  # noqa: E402


# 3 tokens x 2 layers x top-2 over 4 experts; the first token is the prompt.
GRID = [[[0, 1], [2, 3]], [[1, 3], [-1, -1]], [[2, 0], [3, 1]]]
FLAT = [i for t in GRID for l in t for i in l]


class NpyImportTests(FolderTest):
    def file(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_every_field(self):
        a = self.file("a.npy", npy((3, 2, 2), FLAT))
        b = self.file("b.npy", npy((1, 2, 2), [3, 2, 0, 1], descr="<i8", code="q"))
        self.assertEqual(cli.main(["import", "npy", a, b, "--prompt-tokens", "1", "0", "--experts", "4", "--model", "tiny",
                                   "--out", self.out]), 0)
        with gzip.open(self.out, "rt") as f:
            lines = [json.loads(x) for x in f]
        self.assertEqual((lines[0]["layers"], lines[0]["experts"], lines[0]["top_k"], lines[0]["model"]), (2, 4, 2, "tiny"))
        self.assertIn("arrays", lines[0]["source"])
        self.assertEqual([(t["seq"], t["pos"], t["phase"], t["experts"]) for t in lines[1:]],
                         [(0, 0, "prefill", [[0, 1], [2, 3]]), (0, 1, "decode", [[1, 3], None]), (0, 2, "decode", [[2, 0], [3, 1]]),
                          (1, 0, "decode", [[3, 2], [0, 1]])])

    def test_vllm_and_sglang_take_arrays_too(self):
        a = self.file("a.npy", npy((3, 2, 2), FLAT))
        for engine in ("vllm", "sglang"):
            with self.subTest(engine):
                self.assertEqual(cli.main(["import", engine, a, "--prompt-tokens", "2", "--experts", "4", "--out", self.out]), 0)
                with gzip.open(self.out, "rt") as f:
                    lines = [json.loads(x) for x in f]
                self.assertIn({"vllm": "vLLM", "sglang": "SGLang"}[engine] + " routed_experts arrays", lines[0]["source"])
                self.assertEqual([t["phase"] for t in lines[1:]], ["prefill", "prefill", "decode"])
                os.remove(self.out)
        self.assertEqual(cli.main(["import", "vllm", a, "--experts", "4", "--out", self.out]), 1)  # no --prompt-tokens
        json_file = self.file("r.json", b"{}")
        self.assertEqual(cli.main(["import", "vllm", a, json_file, "--prompt-tokens", "1", "--experts", "4", "--out", self.out]), 1)
        self.assertEqual(cli.main(["import", "sglang", json_file, "--experts", "4", "--out", self.out]), 1)  # no --layers
        self.assertFalse(os.path.exists(self.out))

    @unittest.skipUnless(HAVE_MOESIM, NO_MOESIM)
    def test_round_trip_through_moesim(self):
        a = self.file("a.npy", npy((3, 2, 2), FLAT))
        b = self.file("b.npy", npy((3, 2, 2), FLAT, descr="<i2", code="h"))
        cli.main(["import", "npy", a, b, "--prompt-tokens", "2", "1", "--experts", "4", "--out", self.out])
        row = replay(self, self.out, layers=2, experts=4, folder=self.dir)
        self.assertEqual(int(row["accesses"]), accesses(GRID, 2, [0, 1]) + accesses(GRID, 1, [0, 1]))
        self.assertEqual(int(row["missing_cells"]), 2)

    def test_bad_input_names_the_file_and_field_and_writes_nothing(self):
        cases = [
            ("other.npy", b'{"format":"moe-routing-trace"}\n', "not a .npy array"),
            ("flat.npy", npy((12,), FLAT), "field 'shape'"),
            ("float.npy", npy((3, 2, 2), [float(i) for i in FLAT], descr="<f4", code="f"), "field 'descr'"),
            ("fortran.npy", npy((3, 2, 2), FLAT, fortran=True), "field 'fortran_order'"),
            ("short.npy", npy((3, 2, 2), FLAT)[:-4], "truncated or ragged"),
            ("range.npy", npy((1, 2, 2), [0, 7, 1, 2]), "expert id 7 out of range 0..<4"),
            ("padding.npy", npy((1, 2, 2), [0, -1, 1, 2]), "-1 padding beside expert ids"),
        ]
        for name, data, message in cases:
            path = self.file(name, data)
            with self.subTest(name):
                from moesim_trace import npy as importer
                with self.assertRaises(Exception) as caught:
                    importer.import_arrays([path], [0], 4)
                self.assertIn(path, str(caught.exception))
                self.assertIn(message, str(caught.exception))
                self.assertEqual(cli.main(["import", "npy", path, "--prompt-tokens", "0", "--experts", "4", "--out", self.out]), 1)
                self.assertFalse(os.path.exists(self.out))
        good = self.file("a.npy", npy((3, 2, 2), FLAT))
        self.assertEqual(cli.main(["import", "npy", good, "--prompt-tokens", "4", "--experts", "4", "--out", self.out]), 1)
        other = self.file("c.npy", npy((1, 1, 2), [0, 1]))
        self.assertEqual(cli.main(["import", "npy", good, other, "--prompt-tokens", "0", "--experts", "4", "--out", self.out]), 1)


if __name__ == "__main__":
    unittest.main()
