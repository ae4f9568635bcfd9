"""moesim_trace.api: moesim's commands from Python, as DataFrames of its own reports."""
import csv
import os
import subprocess
import tempfile
import unittest
from unittest import mock

from helpers import HAVE_MOESIM, MOESIM, NO_MOESIM, ROOT

from moesim_trace import api

try:
    import pandas  # noqa: F401
    HAVE_PANDAS = True
except ImportError:
    if os.environ.get("MOESIM_REQUIRE_TORCH") == "1":  # make test installs the api extra: absent is a failure there
        raise
    HAVE_PANDAS = False


class BinaryTest(unittest.TestCase):
    def test_missing_binary_is_named_with_the_way_out(self):
        with mock.patch.dict(os.environ, {"MOESIM_BIN": "/nonexistent/moesim"}):
            with self.assertRaises(api.MoesimNotFound) as caught:
                api.find_binary()
        self.assertIn("/nonexistent/moesim", str(caught.exception))
        with mock.patch.dict(os.environ, {"PATH": ""}):
            os.environ.pop("MOESIM_BIN", None)
            with mock.patch.object(api.Path, "is_file", return_value=False):
                with self.assertRaises(api.MoesimNotFound) as caught:
                    api.find_binary()
        self.assertIn("make build", str(caught.exception))

    def test_options_become_the_commands_own(self):
        self.assertEqual(api._options({"max_seqs": 8, "set_": ["hardware.gpus=4", "model.top_k=2"], "stream": True,
                                       "numerics": False, "budget": None}),
                         ["--max-seqs", "8", "--set", "hardware.gpus=4", "--set", "model.top_k=2", "--stream"])


@unittest.skipUnless(HAVE_MOESIM, NO_MOESIM)
@unittest.skipUnless(HAVE_PANDAS, "pandas absent: pip install 'moesim-trace[api]'")
class CommandsTest(unittest.TestCase):
    def setUp(self):
        self.env = mock.patch.dict(os.environ, {"MOESIM_BIN": MOESIM})
        self.env.start()

    def tearDown(self):
        self.env.stop()

    def test_replay_is_the_clis_row(self):
        frame = api.replay("traces/mixtral-synth.jsonl.gz", policy="lru", budget="25%", cwd=ROOT)
        with tempfile.TemporaryDirectory() as work:
            out = os.path.join(work, "r.csv")
            subprocess.run([MOESIM, "replay", "traces/mixtral-synth.jsonl.gz", "--policy", "lru", "--budget", "25%",
                            "--out", out], cwd=ROOT, check=True, capture_output=True)
            with open(out, newline="") as f:
                row = next(csv.DictReader(f))
        self.assertEqual(len(frame), 1)
        self.assertEqual(int(frame["hits"][0]), int(row["hits"]))
        self.assertEqual(float(frame["tokens_per_s"][0]), float(row["tokens_per_s"]))

    def test_compare_has_a_row_per_strategy(self):
        frame = api.compare(config="configs/compare-mixtral-a100.yaml", cwd=ROOT)
        self.assertGreater(len(frame), 5)
        self.assertEqual(len(set(frame["policy"])), len(frame))
        self.assertTrue(((frame["hit_rate"] >= 0) & (frame["hit_rate"] <= 1)).all())

    def test_plan_returns_its_frontier_and_settings(self):
        p = api.plan("tokens_per_s=5", policies="lru,n-cpu-moe", jobs=1, cwd=ROOT)
        self.assertTrue(p.reached)
        self.assertEqual(int(p.frontier["chosen"].sum()), 1)
        self.assertIn("policies: [", p.config_yaml)
        self.assertIn("--n-cpu-moe", p.text)
        far = api.plan("tokens_per_s=1e6", policies="lru", cwd=ROOT)
        self.assertFalse(far.reached)
        self.assertIsNone(far.config_yaml)
        self.assertIn("no strategy reaches", far.text)

    def test_a_failing_command_raises_moesims_message(self):
        with self.assertRaises(api.MoesimError) as caught:
            api.replay("traces/mixtral-synth.jsonl.gz", policy="no-such-policy", cwd=ROOT)
        self.assertIn("no-such-policy", str(caught.exception))
        self.assertNotEqual(caught.exception.status, 0)


if __name__ == "__main__":
    unittest.main()
