"""The Parquet importer against per-layer files written here in FLAME-MoE-Traces' schema (`indices` list<int16>,
`scores` list<float16>, one row per token, row i of every layer file the same token)."""
import gzip
import json
import os
import unittest

from helpers import FolderTest, HAVE_MOESIM, NO_MOESIM, accesses, replay
from moesim_trace import cli
from moesim_trace.trace import TraceError

try:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:
    pa = None

ROWS = 7


def ids(layer, row):
    first = (3 * row + layer) % 8
    return [first, (first + 1 + row % 5) % 8]


def scores(layer, row):
    high = 0.5 + 0.05 * ((row + layer) % 6)
    return [high, round(1 - high - 0.1, 2)]


def write_layer(path, layer, rows=ROWS, id_column="indices", score_column="scores", cells=None):
    cells = cells or [ids(layer, r) for r in range(rows)]
    table = pa.table({
        score_column: pa.array([np.array(scores(layer, r), dtype=np.float16) for r in range(len(cells))], type=pa.list_(pa.float16())),
        id_column: pa.array(cells, type=pa.list_(pa.int16())),
    })
    pq.write_table(table, path)


@unittest.skipUnless(pa is not None, "pyarrow absent: pip install pyarrow (make python-test does)")
class ParquetImportTests(FolderTest):
    def setUp(self):
        super().setUp()
        self.folder = os.path.join(self.dir, "iter_5473")
        os.mkdir(self.folder)
        self.names = ["layer_2.parquet", "layer_3.parquet", "layer_10.parquet"]  # by number, not by text
        for layer, name in enumerate(self.names):
            write_layer(os.path.join(self.folder, name), layer)

    def read(self):
        with gzip.open(self.out, "rt") as f:
            return [json.loads(line) for line in f]

    def test_every_field_of_the_trace(self):
        self.assertEqual(cli.main(["import", "parquet", self.folder, "--experts", "8", "--seq-len", "3", "--model", "flame-moe-290m",
                                   "--out", self.out]), 0)
        header, *tokens = self.read()
        self.assertEqual((header["layers"], header["experts"], header["top_k"], header["model"]), (3, 8, 2, "flame-moe-290m"))
        self.assertIn("layer_2.parquet, layer_3.parquet, layer_10.parquet", header["source"])
        self.assertEqual([(t["seq"], t["pos"], t["phase"]) for t in tokens],
                         [(r // 3, r % 3, "prefill") for r in range(ROWS)])
        self.assertEqual([t["experts"] for t in tokens], [[ids(l, r) for l in range(3)] for r in range(ROWS)])
        self.assertEqual([t["weights"] for t in tokens],
                         [[[float(np.float16(w)) for w in scores(l, r)] for l in range(3)] for r in range(ROWS)])

    def test_decode_phase_without_weights_and_a_token_limit(self):
        self.assertEqual(cli.main(["import", "parquet", self.folder, "--experts", "8", "--seq-len", "4", "--phase", "decode",
                                   "--max-tokens", "5", "--weights-column", "", "--out", self.out]), 0)
        _, *tokens = self.read()
        self.assertEqual([(t["seq"], t["pos"], t["phase"]) for t in tokens],
                         [(0, 0, "decode"), (0, 1, "decode"), (0, 2, "decode"), (0, 3, "decode"), (1, 0, "decode")])
        self.assertTrue(all("weights" not in t for t in tokens))

    def test_column_names_as_options(self):
        other = os.path.join(self.dir, "other")
        os.mkdir(other)
        for layer in range(2):
            write_layer(os.path.join(other, f"moe{layer}.parquet"), layer, id_column="topk_ids", score_column="probs")
        self.assertEqual(cli.main(["import", "parquet", other, "--experts", "8", "--seq-len", "7", "--ids-column", "topk_ids",
                                   "--weights-column", "probs", "--out", self.out]), 0)
        _, *tokens = self.read()
        self.assertEqual(tokens[4]["experts"], [ids(0, 4), ids(1, 4)])

    @unittest.skipUnless(HAVE_MOESIM, NO_MOESIM)
    def test_round_trip_through_moesim(self):
        cli.main(["import", "parquet", self.folder, "--experts", "8", "--seq-len", "3", "--phase", "decode", "--out", self.out])
        row = replay(self, self.out, layers=3, experts=8, folder=self.dir)
        grid = [[ids(l, r) for l in range(3)] for r in range(ROWS)]
        self.assertEqual(int(row["accesses"]), accesses(grid, 0, [0, 1, 2]))
        self.assertEqual(int(row["tokens"]), ROWS)

    def test_bad_input_names_the_file_and_field_and_writes_nothing(self):
        from moesim_trace import parquet

        def case(name, setup, message, **options):
            folder = os.path.join(self.dir, name)
            os.mkdir(folder)
            setup(folder)
            with self.subTest(name):
                with self.assertRaises(TraceError) as caught:
                    parquet.import_folder(folder, 8, 3, **options)
                self.assertIn(folder, str(caught.exception))
                self.assertIn(message, str(caught.exception))
                self.assertEqual(cli.main(["import", "parquet", folder, "--experts", "8", "--seq-len", "3", "--out", self.out]), 1)
                self.assertFalse(os.path.exists(self.out))

        def two(folder, second_rows=ROWS, cells=None):
            write_layer(os.path.join(folder, "layer_02.parquet"), 0)
            write_layer(os.path.join(folder, "layer_03.parquet"), 1, rows=second_rows, cells=cells)

        case("ragged", lambda f: two(f, second_rows=5), "layer_03.parquet: 5 rows, ")
        case("range", lambda f: two(f, cells=[[0, 9]] * ROWS), "field 'indices': token 0, layer 0: expert id 9 out of range 0..<8")
        case("width", lambda f: two(f, cells=[[0, 1]] * 3 + [[0, 1, 2]] * 4), "row 3: field 'indices' has 3 ids, top-k is 2")
        case("null", lambda f: two(f, cells=[[-1, -1]] + [[0, 1]] * (ROWS - 1)), "row 0: field 'indices': -1 in a token's routing")

        def negative_score(folder):
            write_layer(os.path.join(folder, "layer_02.parquet"), 0)
            table = pq.read_table(os.path.join(folder, "layer_02.parquet"))
            scores = [[-0.5, 0.25]] + table.column("scores").to_pylist()[1:]
            table = table.set_column(0, "scores", pa.array([np.array(x, dtype=np.float16) for x in scores], type=pa.list_(pa.float16())))
            pq.write_table(table, os.path.join(folder, "layer_02.parquet"))
        case("score", negative_score, "row 0: field 'scores' holds a value outside 0 … 1e6")
        case("column", lambda f: write_layer(os.path.join(f, "l1.parquet"), 0, id_column="experts"), "field 'indices' missing (columns: scores, experts)")
        case("empty", lambda f: None, "no files match '*.parquet'")

        def not_parquet(folder):
            with open(os.path.join(folder, "layer_1.parquet"), "w") as f:
                f.write('{"format":"moe-routing-trace"}\n')
        case("format", not_parquet, "not a Parquet file")
        with self.assertRaisesRegex(TraceError, "--seq-len 0"):
            parquet.import_folder(self.folder, 8, 0)


if __name__ == "__main__":
    unittest.main()
