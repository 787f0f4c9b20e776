"""Error paths: the library's failures arrive as mla.Error subclasses with its code, message
and backend; the package's own checks refuse bad operands before any call."""
import os
import subprocess
import sys
import unittest

import numpy as np

import mla
import support


class LibraryErrors(unittest.TestCase):
    def test_config_errors(self):
        with self.assertRaises(mla.InvalidConfigError) as e:
            mla.open_device({"backend": "cpu", "cpu": {"threadz": 1}})
        self.assertEqual((e.exception.code, e.exception.code_name), (2, "invalid_config"))
        self.assertIn("threadz", e.exception.message)
        self.assertIsInstance(e.exception, ValueError)
        with self.assertRaises(mla.IoError) as e:
            mla.open_device("/nonexistent/mla.json")
        self.assertEqual(e.exception.code, 7)
        with self.assertRaises(mla.InvalidArgumentError):
            mla.open_device(42)

    def test_unavailable_backend_says_why(self):
        if any(b.name == "cuda" and b.available for b in mla.backends()):
            self.skipTest("cuda is available here")
        with self.assertRaises(mla.BackendUnavailableError) as e:
            mla.open_device({"backend": "cuda"})
        self.assertEqual((e.exception.code, e.exception.backend), (4, "cuda"))
        self.assertTrue(e.exception.message)

    def test_plan_errors(self):
        dev = mla.open_device()
        with self.assertRaises(mla.InvalidArgumentError) as e:
            dev.plan(batch=2, h_q=0, num_blocks=4, max_blocks_per_seq=2)
        self.assertEqual((e.exception.code, e.exception.backend), (1, "cpu"))
        self.assertIn("h_q", e.exception.message)
        with self.assertRaises(mla.InvalidArgumentError):
            dev.plan(batch=1, heads=16)  # not a field
        with self.assertRaises(mla.InvalidArgumentError) as e:
            dev.plan(q=(2, 1, 16, 576), block_table=(3, 4))
        self.assertIn("batch", str(e.exception))
        with self.assertRaises(mla.InvalidArgumentError) as e:
            dev.plan(q=np.zeros((1, 1, 16, 576), np.uint16), kv_cache=(4, 64, 1, 576), block_table=(1, 4))
        self.assertIn("NumPy has no bfloat16", str(e.exception))

    def test_schedule_rejects_lengths_the_table_cannot_hold(self):
        r = support.rng()
        case = support.latent_case(r, [10, 64])
        plan = mla.open_device().plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"])
        too_long = np.array([10, 64 * case["block_table"].shape[1] + 1], dtype=np.int32)
        with self.assertRaises(mla.InvalidArgumentError) as e:
            plan.schedule(too_long)
        self.assertEqual(e.exception.backend, "cpu")

    def test_validate_indices_catches_a_bad_block_id(self):
        r = support.rng()
        case = support.latent_case(r, [10, 64])
        plan = mla.open_device().plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"])
        case["block_table"][1, 0] = case["kv_cache"].shape[0] + 5
        with self.assertRaises(mla.InvalidArgumentError) as e:
            plan.run(validate_indices=True, **case)
        self.assertIn("block", e.exception.message)


class PackageChecks(unittest.TestCase):
    def setUp(self):
        r = support.rng()
        self.case = support.latent_case(r, [20, 70], h_q=8)
        self.plan = mla.open_device().plan(q=self.case["q"], kv_cache=self.case["kv_cache"],
                                           block_table=self.case["block_table"])

    def refused(self, fragment, **changes):
        case = dict(self.case, **changes)
        with self.assertRaises(mla.InvalidArgumentError) as e:
            self.plan.run(**case)
        self.assertIn(fragment, str(e.exception))
        self.assertEqual((e.exception.code, e.exception.backend), (1, "cpu"))

    def test_operand_checks(self):
        c = self.case
        self.refused("q: expected fp32 [2, 1, 8, 576], got fp16", q=c["q"].astype(np.float16))
        self.refused("q: expected fp32 [2, 1, 8, 576], got fp32 [2, 1, 4, 576]", q=c["q"][:, :, :4].copy())
        self.refused("block_table: expected int32", block_table=c["block_table"].astype(np.int64))
        self.refused("cache_seqlens: expected int32 [2]", cache_seqlens=c["cache_seqlens"][:1].copy())
        self.refused("last dimension must be contiguous", q=np.repeat(c["q"], 2, axis=3)[..., ::2])
        self.refused("expected a NumPy array or a torch.Tensor", q=c["q"].tolist())
        self.refused("missing", q=None)
        self.refused("not an operand of the latent variant", q_nope=c["q"])
        self.refused("uint16 NumPy array is read as bf16 only", q=np.zeros(c["q"].shape, np.uint16))
        out = np.zeros((2, 1, 8, 512), np.float32)
        out.flags.writeable = False
        self.refused("read-only", out=out)

    def test_schedule_from_another_plan(self):
        other = mla.open_device().plan(q=self.case["q"], kv_cache=self.case["kv_cache"],
                                       block_table=self.case["block_table"])
        with self.assertRaises(mla.InvalidArgumentError):
            self.plan.run(schedule=other.schedule(self.case["cache_seqlens"]), **self.case)

    def test_torch_tensor_on_an_unsupported_device(self):
        try:
            import torch
        except ImportError:
            self.skipTest("torch is not installed")
        with self.assertRaises(mla.InvalidArgumentError) as e:
            self.plan.run(**dict(self.case, q=torch.empty(2, 1, 8, 576, device="meta")))
        self.assertIn("meta", str(e.exception))

    def test_missing_library_is_reported(self):
        env = dict(os.environ, MLA_LIBRARY="/nonexistent/libmla.so")
        code = "import mla\ntry:\n    mla.backends()\nexcept mla.LibraryNotFoundError as e:\n    print('REPORTED', e)\n"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        self.assertIn("REPORTED", out.stdout)
        self.assertIn("/nonexistent/libmla.so (MLA_LIBRARY)", out.stdout)


if __name__ == "__main__":
    unittest.main()
