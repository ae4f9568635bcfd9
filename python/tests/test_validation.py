"""scripts/validation.py's held-out check: the line through two published rows and the preset figure it starts from."""
import importlib.util
import os
import unittest

from helpers import HAVE_MOESIM, MOESIM, NO_MOESIM, ROOT

spec = importlib.util.spec_from_file_location("validation", os.path.join(ROOT, "scripts", "validation.py"))
validation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validation)


class MissLineTest(unittest.TestCase):
    def test_two_rows_give_the_cost_of_a_miss_and_of_a_token_without_misses(self):
        # 2 tokens/s at 10 misses a token, 1 token/s at 30: 0.5 s and 1 s a token, so 0.5 s / 20 misses = 25 ms a
        # miss and 0.5 s - 10 x 25 ms = 250 ms without misses.
        per_miss, without = validation.miss_line((10, 2.0), (30, 1.0))
        self.assertAlmostEqual(per_miss, 0.025)
        self.assertAlmostEqual(without, 0.25)

    def test_the_paper_a100_rows(self):
        # Table 2's A100 rows (2.918 and 2.265 tokens/s) with 26.05 and 64 misses a token: (1/2.265 - 1/2.918) / 37.95
        # = 2.60 ms a miss, and 1/2.918 - 26.05 x 2.60 ms = 275 ms a token, the figures docs/validation.md quotes.
        per_miss, without = validation.miss_line((26.05, 2.918), (64, 2.265))
        self.assertAlmostEqual(per_miss * 1e3, 2.60, places=2)
        self.assertAlmostEqual(without * 1e3, 275, delta=0.5)

    def test_rows_with_equal_misses_are_refused(self):
        with self.assertRaises(SystemExit):
            validation.miss_line((10, 2.0), (10, 1.0))


@unittest.skipUnless(HAVE_MOESIM, NO_MOESIM)
class PresetOverheadTest(unittest.TestCase):
    def test_the_eager_preset_per_expert_overhead_is_read_from_moesim(self):
        # docs/profiles.md: pytorch-eager charges 280 µs per expert, ideal none.
        self.assertAlmostEqual(validation.preset_expert_overhead(MOESIM, "pytorch-eager"), 280e-6)
        self.assertEqual(validation.preset_expert_overhead(MOESIM, "ideal"), 0)

    def test_an_unknown_runtime_is_refused(self):
        with self.assertRaises(SystemExit):
            validation.preset_expert_overhead(MOESIM, "no-such-runtime")


if __name__ == "__main__":
    unittest.main()
