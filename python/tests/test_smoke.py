"""Smoke: `import mla` with neither NumPy nor torch importable, the library found and named,
backends listed, a device opened and planned; the source tree importable with MLA_LIBRARY."""
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_PACKAGE = os.path.abspath(os.path.join(HERE, ".."))  # python/ in the source tree

WITHOUT_NUMPY_AND_TORCH = """
import sys
sys.modules['numpy'] = None   # makes `import numpy` raise ImportError
sys.modules['torch'] = None
import mla
assert 'numpy' not in [m for m in sys.modules if sys.modules[m] is not None]
names = [b.name for b in mla.backends()]
assert 'cpu' in names and 'sim_tpu' in names, names
dev = mla.open_device()
plan = dev.plan(batch=2, h_q=16, num_blocks=4, max_blocks_per_seq=2)
print('LIB', mla.library_path(), mla.library_source())
print('OK', mla.version(), names, dev.backend, plan.kernel_name)
"""


def run(code, **env):
    full = dict(os.environ)
    full.update(env)
    # The child runs in "/", so relative PYTHONPATH entries must become absolute.
    full["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in full.get("PYTHONPATH", "").split(os.pathsep) if p)
    # cwd "/": `python -c` puts the working directory first on sys.path, and ctest runs in
    # the build's python/ folder, which holds a copy of the package.
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, cwd="/")


class Smoke(unittest.TestCase):
    def test_import_without_numpy_or_torch(self):
        r = run(WITHOUT_NUMPY_AND_TORCH)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"OK \d+\.\d+\.\d+")  # mla.version(); test_numpy checks it equals the package's
        lib = r.stdout.split("LIB ")[1].split()[0]
        self.assertTrue(os.path.isfile(lib), lib)

    def test_source_tree_with_mla_library(self):
        lib = run("import mla; print(mla.library_path())").stdout.strip()
        self.assertTrue(lib, "the build-tree package found no library")
        r = run("import mla, os; print(mla.__file__); print(mla.library_path(), mla.library_source())",
                PYTHONPATH=SOURCE_PACKAGE, MLA_LIBRARY=lib)
        self.assertEqual(r.returncode, 0, r.stderr)
        pkg, found = r.stdout.splitlines()
        self.assertTrue(pkg.startswith(SOURCE_PACKAGE), pkg)
        self.assertEqual(found, f"{os.path.realpath(lib)} MLA_LIBRARY")

    def test_versions_agree(self):
        # The package, its pyproject.toml and the library are released together.
        import re
        import mla
        pyproject = open(os.path.join(SOURCE_PACKAGE, "pyproject.toml")).read()
        self.assertEqual(re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1), mla.__version__)
        self.assertEqual(mla.version(), mla.__version__)

    def test_loader_path(self):
        # A copy of the package with no library near it finds libmla through LD_LIBRARY_PATH.
        import shutil
        import tempfile
        import mla
        lib = mla.library_path()
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(os.path.dirname(mla.__file__), os.path.join(tmp, "site", "mla"))
            r = run("import mla; print(mla.library_path()); print(mla.library_source())",
                    PYTHONPATH=os.path.join(tmp, "site"), MLA_LIBRARY="", LD_LIBRARY_PATH=os.path.dirname(lib))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), [lib, "loader path"])


if __name__ == "__main__":
    unittest.main()
