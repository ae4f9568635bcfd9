"""What the importer tests share: fixture writers from each format's specification and a replay through moesim."""
import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOESIM = os.path.join(ROOT, ".build", "release", "moesim")
HAVE_MOESIM = os.access(MOESIM, os.X_OK)
NO_MOESIM = f"moesim binary absent ({MOESIM}): build it with make build"


class FolderTest(unittest.TestCase):
    """A test with its own temporary folder `dir`, removed afterwards, and `out`, a trace path inside it."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.out = os.path.join(self.dir, "t.jsonl.gz")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def assertRefused(self, importer, path, message, command):
        """`importer()` raises an error naming `path` and saying `message`; the CLI `command` (writing to `out`) exits
        1 and writes nothing."""
        from moesim_trace import cli
        from moesim_trace.trace import TraceError
        with self.assertRaises(TraceError) as caught:
            importer()
        self.assertIn(path, str(caught.exception))
        self.assertIn(message, str(caught.exception))
        self.assertEqual(cli.main(command + ["--out", self.out]), 1)
        self.assertFalse(os.path.exists(self.out))


def npy(shape, ids, descr="<i4", code="i", fortran=False, magic=b"\x93NUMPY"):
    """Version 1.0 .npy bytes from NumPy's NEP 1: magic, version, header length, a padded header dict, the data."""
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple(shape)!r}, }}"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return magic + b"\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + struct.pack(f"<{len(ids)}{code}", *ids)


def write_json(folder, name, data):
    """Saves `data` as JSON in `folder`; its path."""
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def accesses(grid, prefill, layers):
    """Accesses moesim counts for one sequence of a [token][layer][slot] grid: its first `prefill` tokens form one
    step (the union of their experts per layer), each later token one step; -1 counts nothing."""
    union = sum(len({i for t in grid[:prefill] for i in t[l] if i != -1}) for l in layers)
    return union + sum(len([i for i in t[l] if i != -1]) for t in grid[prefill:] for l in layers)


def replay(test, trace, layers, experts, folder, policy="on-demand"):
    """Validates `trace` and replays it with a tiny mixtral-shaped model; the report's row."""
    check = subprocess.run([MOESIM, "trace", "validate", trace], capture_output=True, text=True)
    test.assertEqual(check.returncode, 0, check.stderr)
    report = os.path.join(folder, "r.csv")
    run = subprocess.run([MOESIM, "replay", trace, "--model", "mixtral-8x7b", "--set", f"model.layers={layers}",
                          "--set", f"model.experts={experts}", "--policy", policy, "--budget", "4experts", "--out", report],
                         capture_output=True, text=True)
    test.assertEqual(run.returncode, 0, run.stderr)
    with open(report) as f:
        return next(csv.DictReader(f))
