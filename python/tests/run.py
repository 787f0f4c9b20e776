"""Runs one test module for ctest: `run.py MODULE [REQUIRED_IMPORT ...]`.

Exit 77 (ctest's "skipped") with the reason when a required import is missing, so a machine
without python3-numpy / python3-torch shows the tests as skipped, not passed. Exit 1 when the
module ran no test at all (a test list that silently empties is a failure)."""
import importlib
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
module, needs = sys.argv[1], sys.argv[2:]
for name in needs:
    try:
        importlib.import_module(name)
    except ImportError as e:
        print(f"SKIPPED: {module} needs {name}, which {sys.executable} cannot import ({e}); "
              f"on Debian: apt-get install python3-{name}")
        sys.exit(77)
suite = unittest.defaultTestLoader.loadTestsFromName(module)
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
ran = result.testsRun - len(result.skipped)
if ran == 0:
    print(f"FAILED: {module} ran no test")
    sys.exit(1)
sys.exit(0 if result.wasSuccessful() else 1)
