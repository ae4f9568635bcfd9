"""TraceBuilder.add_block (routing arrays, formatted as arrays) against add (one dict per token, json.dumps): the
same tokens must give the same bytes, and the same errors."""
import gzip
import os
import random
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from moesim_trace.trace import TraceBuilder, TraceError  # noqa: E402
from helpers import FolderTest  # noqa: E402


def random_routing(rng, tokens, layers, experts, top_k, null_share):
    """[tokens, layers, top_k] distinct ids per cell, some cells all -1."""
    ids = np.array([[rng.sample(range(experts), top_k) for _ in range(layers)] for _ in range(tokens)], dtype=np.int64)
    for t in range(tokens):
        for layer in range(layers):
            if rng.random() < null_share:
                ids[t, layer] = -1
    return ids


def written(builder, path):
    builder.write(path)
    with open(path, "rb") as f:
        return f.read()


class BlockTests(FolderTest):
    def test_blocks_write_what_tokens_write(self):
        rng = random.Random(7)
        shapes = [(1, 1, 1), (1, 4, 3), (2, 9, 5), (3, 100, 7), (26, 64, 6), (2, 65534, 2)]  # 1- to 5-digit ids
        for seed, (layers, experts, top_k) in enumerate(shapes):
            with self.subTest(layers=layers, experts=experts, top_k=top_k):
                tokens = [rng.randint(1, 40) for _ in range(3)]
                # Sequence numbers and positions of every width, up to the trace's limit.
                starts = [(0, 0), (9, 99_999), (2**31 - 1, 2**31 - 1 - tokens[2] + 1)]
                blocks = [random_routing(rng, n, layers, experts, top_k, 0.2) for n in tokens]
                by_block = TraceBuilder(layers=layers, experts=experts, top_k=top_k, model="m", source="s")
                by_token = TraceBuilder(layers=layers, experts=experts, top_k=top_k, model="m", source="s")
                for (seq, first), ids in zip(starts, blocks):
                    prefill = rng.randint(0, len(ids))
                    by_block.add_block(seq=seq, first_pos=first, prefill=prefill, ids=ids, where="w")
                    for t, row in enumerate(ids.tolist()):
                        by_token.add(seq=seq, pos=first + t, phase="prefill" if t < prefill else "decode",
                                     experts=[None if cell[0] == -1 else cell for cell in row])
                for name in ("a.jsonl", "b.jsonl.gz"):
                    path = os.path.join(self.dir, name)
                    block_bytes, token_bytes = written(by_block, path), written(by_token, path)
                    if name.endswith(".gz"):
                        block_bytes, token_bytes = gzip.decompress(block_bytes), gzip.decompress(token_bytes)
                    self.assertEqual(block_bytes, token_bytes)
                self.assertEqual(by_block.lines, by_token.lines)
                self.assertEqual((by_block.tokens, by_block.sequences), (sum(tokens), 3))

    def test_the_same_trace_gives_the_same_gzip_bytes(self):
        ids = random_routing(random.Random(3), 5000, 4, 16, 2, 0.0)
        b = TraceBuilder(layers=4, experts=16, top_k=2)
        b.add_block(seq=0, first_pos=0, prefill=10, ids=ids)
        path = os.path.join(self.dir, "t.jsonl.gz")
        first = written(b, path)
        self.assertEqual(written(b, path), first)

    def test_block_errors_name_the_token_and_layer_as_add_does(self):
        base = np.array([[[0, 1], [2, 3]], [[1, 3], [-1, -1]], [[2, 0], [3, 1]]])
        cases = [
            ((2, 1, 1), 9, "w: token 2: layer 1: expert id 9 out of range 0..<4"),
            ((1, 0, 1), 1, "w: token 1: layer 0: duplicate expert ids [1, 1]"),
            ((0, 1, 0), -1, "w: token 0: layer 1: expert id -1 out of range 0..<4"),  # -1 beside an id
        ]
        for (t, layer, slot), value, message in cases:
            with self.subTest(message):
                ids = base.copy()
                ids[t, layer, slot] = value
                b = TraceBuilder(layers=2, experts=4, top_k=2)
                with self.assertRaises(TraceError) as e:
                    b.add_block(seq=0, first_pos=0, prefill=1, ids=ids, where="w")
                self.assertEqual(str(e.exception), message)
        b = TraceBuilder(layers=2, experts=4, top_k=2)
        b.add_block(seq=0, first_pos=5, prefill=0, ids=base, where="w")
        with self.assertRaisesRegex(TraceError, "pos 7 does not increase within sequence 0"):
            b.add_block(seq=0, first_pos=7, prefill=0, ids=base, where="w")
        with self.assertRaisesRegex(TraceError, "a prefill token after decode tokens"):
            b.add_block(seq=0, first_pos=8, prefill=1, ids=base, where="w")
        with self.assertRaisesRegex(TraceError, "routing shaped"):
            b.add_block(seq=1, first_pos=0, prefill=0, ids=base[:, :1], where="w")


if __name__ == "__main__":
    unittest.main()
