"""The Megatron-Core router-trace importer against JSON Lines written here from router_trace.py's description: one
record per (step, block, layer) with num_tokens, topk and top_indices [tokens][topk]; hidden states are [s, b, h],
so a step's row i is request i mod b at position i div b."""
import gzip
import json
import os
import unittest

from helpers import FolderTest, HAVE_MOESIM, NO_MOESIM, accesses, replay
from moesim_trace import cli, megatron
from moesim_trace.trace import TraceError

LAYERS = [1, 2]  # decoder layers 1 and 2 are MoE (layer 0 is dense and records nothing)


def cell(step, row, layer):
    """Two distinct experts of 6 for a (step, row, layer), by construction."""
    first = (step + row + layer) % 6
    return [first, (first + 1 + row % 3) % 6]


def records(steps, batch):
    """steps: rows per step; yields the records of each (step, layer)."""
    for step, rows in enumerate(steps):
        for layer in LAYERS:
            top = [cell(step, r, layer) for r in range(rows)]
            yield {"step": step, "stage": "pre_dispatch", "block": "decoder", "layer": layer, "rank": 0,
                   "num_tokens": rows, "topk": 2, "top_indices": top}
        yield {"step": step, "stage": "pre_dispatch", "block": "mtp", "layer": 1, "mtp_idx": 0, "rank": 0,
               "num_tokens": 1, "topk": 2, "top_indices": [[5, 4]]}  # an MTP head: left out


class MegatronImportTests(FolderTest):
    def write(self, name, recs, extra=""):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
            f.write(extra)
        return path

    def expected(self, steps, batch):
        """Per request: (prefill rows, grid), built from the layout rule, not by the importer."""
        requests, current = [], []
        for step, rows in enumerate(steps):
            length = rows // batch
            if length == 1 and current:
                for b, (_, grid) in enumerate(current):
                    grid.append([cell(step, b, l) for l in LAYERS])
                continue
            current = [(length, [[cell(step, s * batch + b, l) for l in LAYERS] for s in range(length)]) for b in range(batch)]
            requests.extend(current)
        return requests

    def test_every_field_of_the_trace(self):
        steps = [6, 2, 2, 8, 2]  # two requests of 3 prompt tokens, two decode steps; then two of 4, one decode step
        path = self.write("router_trace_rank0.jsonl", records(steps, 2))
        self.assertEqual(cli.main(["import", "megatron", path, "--experts", "6", "--batch", "2", "--out", self.out]), 0)
        with gzip.open(self.out, "rt") as f:
            header, *tokens = [json.loads(line) for line in f]
        self.assertEqual((header["layers"], header["experts"], header["top_k"]), (2, 6, 2))
        self.assertIn("Megatron layers [1, 2]", header["notes"])
        want = []
        for seq, (prefill, grid) in enumerate(self.expected(steps, 2)):
            want += [(seq, pos, "prefill" if pos < prefill else "decode", row) for pos, row in enumerate(grid)]
        self.assertEqual([(t["seq"], t["pos"], t["phase"], t["experts"]) for t in tokens], want)
        # Row 1 of step 0 is request 1's first token (sequence first): it starts sequence 1.
        self.assertEqual(tokens[5]["experts"], [cell(0, 1, 1), cell(0, 1, 2)])

    @unittest.skipUnless(HAVE_MOESIM, NO_MOESIM)
    def test_round_trip_through_moesim_with_two_ranks(self):
        steps = [4, 1, 1, 1, 3, 1]
        a = self.write("router_trace_rank0.jsonl", records(steps, 1))
        b = self.write("router_trace_rank1.jsonl", records(steps, 1))  # a tensor-parallel peer: the same routing
        cli.main(["import", "megatron", a, b, "--experts", "6", "--out", self.out])
        row = replay(self, self.out, layers=2, experts=6, folder=self.dir)
        self.assertEqual(int(row["accesses"]), sum(accesses(g, p, [0, 1]) for p, g in self.expected(steps, 1)))
        self.assertEqual(int(row["tokens"]), 11)

    def test_bad_input_names_the_file_and_field_and_writes_nothing(self):
        good = list(records([3, 1], 1))
        missing_layer = [r for r in good if not (r["step"] == 1 and r["layer"] == 2)]
        ragged = [dict(r, top_indices=[[0, 1], [2]]) if r["step"] == 0 and r["layer"] == 1 else r for r in good]
        ranged = [dict(r, top_indices=[[0, 7]]) if r["step"] == 1 and r["layer"] == 1 else r for r in good]
        padded = [dict(r, top_indices=[[-1, 1]]) if r["step"] == 1 and r["layer"] == 1 else r for r in good]
        cases = {
            "other.jsonl": ([{"format": "moe-routing-trace", "version": 1}], "", ":1: field 'top_indices' missing"),
            "layer.jsonl": (missing_layer, "", "step 1: layer 2 missing"),
            "ragged.jsonl": (ragged, "", "token 1 has 1 ids, top-k is 2 (ragged)"),
            "range.jsonl": (ranged, "", "expert id 7 out of range 0..<6"),
            "padding.jsonl": (padded, "", "-1 padding beside expert ids"),
            "json.jsonl": (good, "{not json\n", ":7: not JSON"),
            "count.jsonl": ([dict(good[0], num_tokens=5)], "", "field 'num_tokens': 5, but top_indices has 3 rows"),
        }
        for name, (recs, extra, message) in cases.items():
            path = self.write(name, recs, extra)
            with self.subTest(name):
                self.assertRefused(lambda: megatron.import_traces([path], 6), path, message,
                                   ["import", "megatron", path, "--experts", "6"])
        a = self.write("r0.jsonl", good)
        b = self.write("r1.jsonl", ranged[:1] + [dict(good[1], top_indices=[[5, 4], [3, 2], [1, 0]])] + good[2:])
        with self.assertRaisesRegex(TraceError, "differs from .*import one rank's file"):
            megatron.import_traces([a, b], 6)
        with self.assertRaisesRegex(TraceError, "step 0: 3 tokens are not a whole number of positions for --batch 2"):
            megatron.import_traces([a], 6, batch=2)


if __name__ == "__main__":
    unittest.main()
