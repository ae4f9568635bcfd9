"""The importer fuzzer (fuzz_importers.py) as a unit test: a few hundred seeded mutations per importer, no traceback,
hang or trace that moesim refuses. The long run (100,000 per importer) is quoted in docs/robustness.md."""
import os
import unittest

from fuzz_importers import IMPORTERS, fuzz

EXECS = int(os.environ.get("MOESIM_FUZZ_EXECS", "300"))


def _available(importer):
    module = {"sglang-dump": "torch", "parquet": "pyarrow"}.get(importer)
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


class ImporterFuzzTests(unittest.TestCase):
    def test_every_importer(self):
        for importer in sorted(IMPORTERS):
            with self.subTest(importer=importer):
                if not _available(importer):
                    self.skipTest(f"{importer} needs a package not installed")
                outcomes, failures = fuzz(importer, EXECS, seed=7, report=None)
                self.assertEqual(failures, [], importer)
                self.assertEqual(outcomes["accepted"] + outcomes["refused"], EXECS)


if __name__ == "__main__":
    unittest.main()
