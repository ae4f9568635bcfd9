"""The SGLang recorder-dump importer against `torch.save` files written here from the recorder's description
(sglang/srt/eplb/expert_distribution.py, per_token mode): records per forward pass with forward_mode, positions,
extend_seq_lens and topk_ids_of_layer [layers, tokens, 8] of physical ids padded with -1, and the
physical-to-logical map."""
import gzip
import json
import os
import unittest

from helpers import FolderTest, HAVE_MOESIM, NO_MOESIM, accesses, replay
from moesim_trace import cli, sglang_dump
from moesim_trace.trace import TraceError

try:
    import torch
except ImportError:
    torch = None

LAYERS, SLOTS = 3, 8  # layer 0 is dense: -1 everywhere
# Physical expert 4 is a replica of logical expert 1.
PHYSICAL_TO_LOGICAL = [[0, 1, 2, 3, 1]] * LAYERS


def logical(g, layer):
    """The routing of the g-th token forwarded, by construction: two distinct logical experts of 4."""
    return [(g + layer) % 4, (g + layer + 1) % 4]


class Dump:
    """Forward passes written as the recorder writes them; remembers each token's logical routing per request."""

    def __init__(self):
        self.records, self.g, self.expected = [], 0, {}

    def forward(self, mode, tokens, lengths=None):
        """tokens: [(request, position)] in batch order."""
        ids = torch.full((LAYERS, len(tokens), SLOTS), -1, dtype=torch.int32)
        for t, (request, position) in enumerate(tokens):
            for layer in (1, 2):
                cell = logical(self.g, layer)
                physical = [4 if (e == 1 and self.g % 2 == 0) else e for e in cell]
                ids[layer, t, :2] = torch.tensor(physical)
            self.expected.setdefault(request, []).append((position, [None, logical(self.g, 1), logical(self.g, 2)]))
            self.g += 1
        self.records.append({"forward_pass_id": len(self.records), "rank": 0, "gatherer_key": "primary",
                             "input_ids": [7] * len(tokens), "positions": [p for _, p in tokens],
                             "extend_seq_lens": lengths, "forward_mode": mode, "topk_ids_of_layer": ids,
                             "misc_objects": [], "global_physical_count": torch.zeros(LAYERS, 5, dtype=torch.int32)})

    def save(self, path, **changes):
        data = {"records": self.records, "last_physical_to_logical_map": torch.tensor(PHYSICAL_TO_LOGICAL)}
        data.update(changes)
        torch.save(data, path)


def scenario():
    d = Dump()
    d.forward(1, [("A", 0), ("A", 1), ("A", 2), ("B", 0), ("B", 1)], [3, 2])  # extend: A and B
    d.forward(2, [("A", 3), ("B", 2)])                                        # decode
    d.forward(2, [("A", 4), ("B", 3)])
    d.forward(1, [("C", 0), ("C", 1)], [2])                                   # C arrives
    d.forward(2, [("B", 4), ("C", 2)])                                        # A has finished
    d.records.append({"forward_mode": 4, "positions": [], "topk_ids_of_layer": torch.zeros(LAYERS, 0, SLOTS, dtype=torch.int32)})
    d.forward(3, [("D", 0), ("D", 1), ("B", 5), ("C", 3)], [2, 1, 1])        # mixed: D's prefill, B's and C's decode
    d.forward(1, [("E", 5)], [1])  # a prefix-cache hit: 5 cached tokens, one computed; not finished A's sixth token
    return d


@unittest.skipUnless(torch is not None, "torch absent: pip install torch (make python-test does)")
class SGLangDumpImportTests(FolderTest):
    def setUp(self):
        super().setUp()
        self.dumps = os.path.join(self.dir, "dumps")
        os.mkdir(self.dumps)

    def test_every_field_of_the_trace(self):
        d = scenario()
        d.save(os.path.join(self.dumps, "expert_distribution_recorder_1700000000.5_0.pt"))
        self.assertEqual(cli.main(["import", "sglang-dump", self.dumps, "--experts", "4", "--model", "m", "--out", self.out]), 0)
        with gzip.open(self.out, "rt") as f:
            header, *tokens = [json.loads(line) for line in f]
        self.assertEqual((header["layers"], header["experts"], header["top_k"]), (2, 4, 2))
        self.assertIn("1 of 3 layers", header["notes"])
        prefill = {"A": 3, "B": 2, "C": 2, "D": 2, "E": 1}
        want = []
        for seq, request in enumerate("ABCDE"):
            for n, (position, cells) in enumerate(d.expected[request]):
                want.append((seq, position, "prefill" if n < prefill[request] else "decode", cells[1:]))
        self.assertEqual([(t["seq"], t["pos"], t["phase"], t["experts"]) for t in tokens], want)

    @unittest.skipUnless(HAVE_MOESIM, NO_MOESIM)
    def test_round_trip_through_moesim(self):
        d = scenario()
        d.save(os.path.join(self.dumps, "expert_distribution_recorder_1.0_0.pt"))
        cli.main(["import", "sglang-dump", self.dumps, "--experts", "4", "--out", self.out])
        row = replay(self, self.out, layers=2, experts=4, folder=self.dir)
        prefill = {"A": 3, "B": 2, "C": 2, "D": 2, "E": 1}
        want = sum(accesses([[c[1], c[2]] for _, c in d.expected[r]], prefill[r], [0, 1]) for r in "ABCDE")
        self.assertEqual(int(row["accesses"]), want)
        self.assertEqual(int(row["tokens"]), 18)

    def test_bad_input_names_the_file_and_field_and_writes_nothing(self):
        def broken(change):
            d = scenario()
            change(d)
            return d

        def set_ids(d, layer, token, slots):
            d.records[0]["topk_ids_of_layer"][layer, token, :len(slots)] = torch.tensor(slots)

        cases = {
            "padding": (lambda d: set_ids(d, 1, 0, [-1, 2]), "records[0]: token 0, layer 1: -1 padding before expert ids"),
            "range": (lambda d: set_ids(d, 2, 1, [0, 5]), "records[0]: field 'topk_ids_of_layer': physical expert 5 beyond the map's 5"),
            "ragged": (lambda d: d.records[1].update(positions=[3]), "records[1]: field 'positions': 1 positions for 2 tokens"),
            "lengths": (lambda d: d.records[0].update(extend_seq_lens=[3, 1]), "field 'extend_seq_lens'"),
            "orphan": (lambda d: d.records[1].update(positions=[9, 2]), "a decode token at position 9"),
            "speculative": (lambda d: d.records[1].update(forward_mode=5), "field 'forward_mode': 5"),
            "missing": (lambda d: d.records[2].pop("positions"), "records[2]: field 'positions' missing"),
        }
        for name, (change, message) in cases.items():
            path = os.path.join(self.dir, f"expert_distribution_recorder_{name}_0.pt")
            broken(change).save(path)
            with self.subTest(name):
                self.assertRefused(lambda: sglang_dump.import_dump([path], 4), path, message,
                                   ["import", "sglang-dump", path, "--experts", "4"])
        logical_out_of_range = os.path.join(self.dir, "wide.pt")
        scenario().save(logical_out_of_range, last_physical_to_logical_map=torch.tensor([[0, 1, 2, 3, 6]] * LAYERS))
        with self.assertRaisesRegex(TraceError, "expert id 6 out of range 0..<4"):
            sglang_dump.import_dump([logical_out_of_range], 4)
        other = os.path.join(self.dir, "other.pt")
        with open(other, "w") as f:
            f.write('{"format": "moe-routing-trace"}\n')
        self.assertEqual(cli.main(["import", "sglang-dump", other, "--experts", "4", "--out", self.out]), 1)
        torch.save({"logical_count": torch.zeros(3, 4)}, other)  # a stat-mode dump
        with self.assertRaisesRegex(TraceError, "field 'records' missing"):
            sglang_dump.import_dump([other], 4)
        self.assertFalse(os.path.exists(self.out))


if __name__ == "__main__":
    unittest.main()
