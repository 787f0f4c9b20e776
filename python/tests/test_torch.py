"""Every entry point with PyTorch CPU tensors on the cpu and sim_tpu backends (bf16, fp16,
fp32), checked against the float64 reference with a negative control."""
import unittest

import torch

import mla
import support


class TorchCpuOnBackends(unittest.TestCase):
    def test_latent_each_dtype(self):
        r = support.rng()
        for backend, path in support.CONFIGS.items():
            dev = mla.open_device(path)
            for dtype in ("bf16", "fp16", "fp32"):
                with self.subTest(backend=backend, dtype=dtype):
                    case = support.as_torch(support.latent_case(r, [129, 0, 64, 7], s_q=2, h_q=16), dtype)
                    plan = dev.plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"],
                                    causal=True)
                    self.assertEqual((plan.backend, plan.problem["dtype"]), (backend, dtype))
                    out, lse = plan.run(schedule=plan.schedule(case["cache_seqlens"]), **case)
                    self.assertIsInstance(out, torch.Tensor)
                    self.assertEqual((out.dtype, tuple(out.shape)), (case["q"].dtype, (4, 2, 16, 512)))
                    self.assertEqual((lse.dtype, tuple(lse.shape)), (torch.float32, (4, 16, 2)))
                    self.assertTrue(plan.check(out, lse, **case).passed)
                    bad = out.clone()
                    support.corrupt_one_valid_output(bad, case["cache_seqlens"].numpy())
                    self.assertFalse(plan.check(bad, lse, **case).passed)

    def test_given_outputs_and_strided_query(self):
        r = support.rng()
        dev = mla.open_device(support.CONFIGS["cpu"])
        case = support.as_torch(support.latent_case(r, [33, 140], h_q=8), "bf16")
        # q as a view into a wider buffer: strided heads, last dimension contiguous.
        wide = torch.full((2, 1, 16, 576), float("nan"), dtype=torch.bfloat16)
        wide[:, :, ::2] = case["q"]
        case["q"] = wide[:, :, ::2]
        self.assertFalse(case["q"].is_contiguous())
        plan = dev.plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"])
        out = torch.full((2, 1, 8, 512), float("nan"), dtype=torch.bfloat16)
        lse = torch.full((2, 8, 1), float("nan"))
        got = plan.run(out=out, lse=lse, **case)
        self.assertIs(got[0], out)
        self.assertIs(got[1], lse)
        self.assertTrue(plan.check(out, lse, **case).passed)

    def test_absorb_variant(self):
        r = support.rng()
        for backend, path in support.CONFIGS.items():
            with self.subTest(backend=backend):
                dev = mla.open_device(path)
                case = support.as_torch(support.absorb_case(r, [77, 1]), "bf16")
                plan = dev.plan(**{k: case[k] for k in ("q_nope", "q_rope", "w_uk", "w_uv", "kv_cache", "block_table")})
                out, lse = plan.run(**case)
                self.assertEqual(tuple(out.shape), (2, 1, 8, 32))
                self.assertTrue(plan.check(out, lse, **case).passed)


if __name__ == "__main__":
    unittest.main()
