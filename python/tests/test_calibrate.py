"""calibrate-gpu: the link fit and the overheads worked by hand, the CPU run end to end (its profiles load in moesim
and carry the measured figures), and a clear refusal where no GPU is visible."""
import os
import re
import subprocess
import unittest

from helpers import FolderTest, HAVE_MOESIM, MOESIM, NO_MOESIM, ROOT
from moesim_trace import calibrate, cli
from moesim_trace.trace import TraceError

try:
    import torch
except ImportError:
    torch = None


def read(path):
    with open(path) as f:
        return f.read()


class FitTests(unittest.TestCase):
    def test_link_line_through_two_copies(self):
        # 4 KiB in 12 µs and 1 GiB in 40 ms: rate (2^30 - 4096) / (0.04 - 12e-6) B/s, latency 12 µs - 4096 B / rate.
        latency, rate = calibrate.fit_link(4096, 12e-6, 1 << 30, 0.04)
        self.assertAlmostEqual(rate, ((1 << 30) - 4096) / (0.04 - 12e-6), places=3)
        self.assertAlmostEqual(latency, 12e-6 - 4096 / rate, places=15)
        self.assertAlmostEqual(rate / 1e9, 26.85, places=2)
        with self.assertRaisesRegex(TraceError, "do not grow with size"):
            calibrate.fit_link(4096, 1e-3, 1 << 20, 1e-3)

    def test_roofline_of_one_expert(self):
        # Mixtral's expert in fp16: 3·4096·14336 params; at one token on 1935 GB/s and 312 TFLOP/s the weight reads
        # dominate: 352,321,536 B / 1.935e12 B/s = 182.08 µs, plus a 5 µs launch.
        params = 3 * 4096 * 14336
        seconds = calibrate.roofline_seconds(1, params, 2 * params, 312e12, 1.935e12, 5e-6)
        self.assertAlmostEqual(seconds, 2 * params / 1.935e12 + 5e-6, places=12)
        self.assertAlmostEqual(seconds * 1e6, 187.08, places=2)
        # At 4096 tokens compute dominates: 2·4096·params / 312e12.
        self.assertAlmostEqual(calibrate.roofline_seconds(4096, params, 2 * params, 312e12, 1.935e12, 0), 2 * 4096 * params / 312e12)


@unittest.skipUnless(torch is not None, "torch absent: pip install torch (make python-test does)")
class QuantiseTests(unittest.TestCase):
    def test_codes_are_packed_high_bits_first(self):
        # One group of four weights 0, 1, 2, 3 at 2 bits: scale (3 - 0) / 3 = 1, zero 0, codes 0 1 2 3, one byte
        # 00 01 10 11 = 27; at 4 bits, 0…15 is scale 1, zero 0 and bytes 0x01, 0x23, …, 0xEF.
        packed, scale, zero = calibrate.quantise(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), 2, 4)
        self.assertEqual(packed.tolist(), [27])
        self.assertEqual((scale.item(), zero.item()), (1.0, 0.0))
        packed, _, _ = calibrate.quantise(torch.arange(16.0).reshape(1, 16), 4, 16)
        self.assertEqual(packed.tolist(), [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF])

    def test_round_trip_is_within_half_a_step_of_each_group(self):
        for seed in range(5):
            torch.manual_seed(seed)
            w = torch.randn(16, 32)
            for bits, group in ((2, 16), (4, 8), (8, 32)):
                packed, scale, zero = calibrate.quantise(w, bits, group)
                self.assertEqual(packed.numel(), w.numel() * bits // 8)
                back = calibrate.dequantise(packed, scale, zero, bits, w.shape)
                error = (back - w).abs().reshape(-1, group).max(dim=1).values
                self.assertTrue(bool((error <= scale.reshape(-1) / 2 + 1e-6).all()), f"seed {seed}, {bits} bits")


@unittest.skipUnless(torch is not None, "torch absent: pip install torch (make python-test does)")
class CalibrateRunTests(FolderTest):
    def test_a_quantised_expert_is_timed_as_stored(self):
        hardware, runtime = os.path.join(self.dir, "q.yaml"), os.path.join(self.dir, "q-runtime.yaml")
        self.assertEqual(cli.main(["calibrate-gpu", "--device", "cpu", "--hidden", "64", "--ffn", "128", "--tokens", "1",
                                   "--copy-mib", "8", "--repeats", "3", "--weight-bits", "2", "--group-size", "16",
                                   "--out", hardware, "--runtime-out", runtime]), 0)
        text = read(runtime)
        self.assertIn("one token's expert FFN (weights at 2 bits in groups of 16, dequantised then multiplied)", text)
        self.assertGreaterEqual(float(dict(re.findall(r"^(\w+): (\S+)$", text, re.M))["expert_overhead_s"]), 0)
        # 3·64·128 weights at 2 bits and a float32 scale and zero per 16: 6,144 + 1,536 × 8 bytes.
        figures = calibrate.measure("cpu", 64, 128, tokens=(1,), copy_mib=8, repeats=1, weight_bits=2, group_size=16,
                                    progress=lambda _: None)
        self.assertEqual(figures["expert_bytes"], 6144 + 1536 * 8)
        for bits, group, message in ((3, 16, "must be 2, 4, 8 or 16"), (2, 10, "--group-size 10: must divide"),
                                     (4, 1, "multiple of 2")):
            with self.assertRaisesRegex(TraceError, message):
                calibrate.measure("cpu", 64, 128, tokens=(1,), weight_bits=bits, group_size=group, progress=lambda _: None)

    def test_cpu_run_writes_profiles_moesim_loads(self):
        hardware, runtime = os.path.join(self.dir, "cpu.yaml"), os.path.join(self.dir, "cpu-runtime.yaml")
        self.assertEqual(cli.main(["calibrate-gpu", "--device", "cpu", "--hidden", "64", "--ffn", "128", "--tokens", "1", "8",
                                   "--copy-mib", "8", "--repeats", "3", "--name", "test-cpu", "--out", hardware,
                                   "--runtime-out", runtime]), 0)
        text = read(hardware)
        fields = dict(re.findall(r"^(\w+): (\S+)$", text, re.M))
        for key in ("gpu_memory_bytes", "hbm_bytes_per_s", "gpu_flops", "link_bytes_per_s", "kernel_launch_s"):
            self.assertGreater(float(fields[key]), 0, key)
        self.assertGreaterEqual(float(fields["link_latency_s"]), 0)
        self.assertEqual((fields["preset"], fields["name"]), ("a100-80gb-pcie", "test-cpu"))
        self.assertRegex(text, r"#\s+1\s+\S+\n#\s+8\s+\S+")  # the FFN timings per token count
        rt = dict(re.findall(r"^(\w+): (\S+)$", read(runtime), re.M))
        self.assertEqual(rt["preset"], "ideal")
        self.assertTrue(0 < float(rt["pageable_link_fraction"]) <= 1)
        self.assertGreaterEqual(float(rt["layer_overhead_s"]), 0)
        if not HAVE_MOESIM:
            self.skipTest(NO_MOESIM)
        run = subprocess.run([MOESIM, "replay", os.path.join(ROOT, "traces", "mixtral-synth.jsonl.gz"), "--policy", "lru",
                              "--budget", "25%", "--hardware", hardware, "--runtime", runtime],
                             capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("on test-cpu (test-cpu-runtime runtime)", run.stdout)

    @unittest.skipIf(torch is not None and torch.cuda.is_available(), "a GPU is visible here")
    def test_no_gpu_is_a_clear_error(self):
        out = os.path.join(self.dir, "gpu.yaml")
        with self.assertRaisesRegex(TraceError, "no CUDA GPU visible to torch .*--device cpu takes the same measurements"):
            calibrate.measure("cuda")
        self.assertEqual(cli.main(["calibrate-gpu", "--out", out]), 1)
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main()
