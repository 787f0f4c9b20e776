"""mla.flashmla on CPU tensors: FlashMLA's call sequence unchanged but for the import, checked
against an independent float64 computation of FlashMLA's dense decode contract and against the
library's reference; metadata reuse rules; unsupported options."""
import math
import unittest

import torch

import mla
import mla.flashmla as fm
import support


def dense_decode_f64(q, k_cache, block_table, cache_seqlens, head_dim_v, scale, causal):
    """FlashMLA's dense decode written out in float64: out [b, s_q, h_q, dv], lse [b, h_q, s_q]."""
    b, s_q, h_q, d = q.shape
    page, h_kv = k_cache.shape[1], k_cache.shape[2]
    out = torch.zeros(b, s_q, h_q, head_dim_v, dtype=torch.float64)
    lse = torch.full((b, h_q, s_q), math.inf, dtype=torch.float64)
    for i in range(b):
        n = int(cache_seqlens[i])
        if n == 0:
            continue
        blocks = block_table[i, : -(-n // page)].long()
        keys = k_cache[blocks].reshape(-1, h_kv, d)[:n].double()  # [n, h_kv, d]
        for h in range(h_q):
            k = keys[:, h // (h_q // h_kv)]
            s = scale * (q[i, :, h].double() @ k.T)  # [s_q, n]
            if causal:
                for t in range(s_q):
                    s[t, n - s_q + t + 1:] = -math.inf
            for t in range(s_q):
                if torch.isinf(s[t]).all():
                    continue
                lse[i, h, t] = torch.logsumexp(s[t], 0)
                out[i, t, h] = torch.softmax(s[t], 0) @ k[:, :head_dim_v]
    return out, lse


class FlashMLACompat(unittest.TestCase):
    def tearDown(self):
        fm.use_device(None)

    def make(self, r, lens, s_q=1, h_q=16, dtype="bf16"):
        case = support.as_torch(support.latent_case(r, lens, s_q=s_q, h_q=h_q), dtype)
        return case["q"], case["kv_cache"], case["block_table"], case["cache_seqlens"]

    def test_matches_float64_flashmla_semantics(self):
        r = support.rng()
        for causal, s_q in ((False, 1), (True, 2)):
            with self.subTest(causal=causal, s_q=s_q):
                q, kv, bt, lens = self.make(r, [0, 1, 65, 150], s_q=s_q)
                meta, num_splits = fm.get_mla_metadata()
                self.assertIsNone(num_splits)
                out, lse = fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, meta, num_splits, causal=causal)
                self.assertEqual((out.dtype, tuple(out.shape)), (torch.bfloat16, (4, s_q, 16, 512)))
                self.assertEqual((lse.dtype, tuple(lse.shape)), (torch.float32, (4, 16, s_q)))
                self.assertEqual(meta.plan.backend, "cpu")
                want_out, want_lse = dense_decode_f64(q, kv, bt, lens, 512, 576 ** -0.5, causal)
                finite = torch.isfinite(want_lse)
                self.assertTrue(torch.equal(torch.isfinite(lse), finite), "lse is +inf exactly where no key is seen")
                self.assertLess((lse.double() - want_lse)[finite].abs().max().item(), 2e-2)
                err = (out.double() - want_out).norm() / want_out.norm()
                self.assertLess(err.item(), 1e-2)
                self.assertTrue(meta.plan.check(out, lse, q=q, kv_cache=kv, block_table=bt, cache_seqlens=lens).passed)

    def test_metadata_reused_across_layers_and_old_positional_call(self):
        r = support.rng()
        q, kv, bt, lens = self.make(r, [100, 20], s_q=1, dtype="fp16")
        # FlashMLA's old call: (cache_seqlens, s_q * h_q // h_kv, h_kv) -> (metadata, num_splits).
        meta, num_splits = fm.get_mla_metadata(lens, 1 * 16 // 1, 1)
        first_schedule = None
        for layer in range(3):
            q = torch.rand_like(q) * 2 - 1
            out, lse = fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, meta, num_splits, softmax_scale=0.1)
            first_schedule = first_schedule or meta.schedule
            self.assertIs(meta.schedule, first_schedule, "one schedule serves every layer of the step")
            self.assertEqual(out.dtype, torch.float16)
            self.assertTrue(meta.plan.check(out, lse, q=q, kv_cache=kv, block_table=bt, cache_seqlens=lens).passed)
        self.assertAlmostEqual(meta.plan.problem["softmax_scale"], 0.1, places=6)
        # A second step with a new metadata object reuses the cached plan.
        meta2, _ = fm.get_mla_metadata()
        fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, meta2, softmax_scale=0.1)
        self.assertIs(meta2.plan, meta.plan)
        self.assertIsNot(meta2.schedule, meta.schedule)

    def test_inconsistent_reuse_is_refused(self):
        r = support.rng()
        q, kv, bt, lens = self.make(r, [10, 20])
        meta, _ = fm.get_mla_metadata()
        fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, meta)
        with self.assertRaises(mla.InvalidArgumentError) as e:
            fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, meta, causal=True)
        self.assertIn("get_mla_metadata", str(e.exception))

    def test_use_device_runs_on_chosen_backend(self):
        r = support.rng()
        q, kv, bt, lens = self.make(r, [50, 129])
        fm.use_device(support.CONFIGS["sim_tpu"])
        meta, _ = fm.get_mla_metadata()
        out, lse = fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, meta)
        self.assertEqual(meta.plan.backend, "sim_tpu")
        self.assertTrue(meta.plan.check(out, lse, q=q, kv_cache=kv, block_table=bt, cache_seqlens=lens).passed)
        fm.use_device(None)
        meta, _ = fm.get_mla_metadata()
        fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, meta)
        self.assertEqual(meta.plan.backend, "cpu")

    def test_unsupported_options_raise(self):
        r = support.rng()
        q, kv, bt, lens = self.make(r, [10])
        for kwargs in (dict(indices=torch.zeros(1, 1, 64, dtype=torch.int32)), dict(attn_sink=torch.zeros(16)),
                       dict(is_fp8_kvcache=True), dict(extra_k_cache=kv), dict(topk_length=lens),
                       dict(extra_indices_in_kvcache=torch.zeros(1, 1, 64, dtype=torch.int32)),
                       dict(extra_topk_length=lens)):
            with self.subTest(option=next(iter(kwargs))):
                with self.assertRaises(mla.UnsupportedError) as e:
                    fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, fm.get_mla_metadata()[0], **kwargs)
                self.assertIn(next(iter(kwargs)), str(e.exception))
        with self.assertRaises(mla.InvalidArgumentError):
            fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, fm.get_mla_metadata()[0], torch.zeros(1))
        with self.assertRaises(mla.InvalidArgumentError):
            fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, None)
        with self.assertRaises(mla.InvalidArgumentError):
            fm.flash_mla_with_kvcache(q, kv, None, lens, 512, fm.get_mla_metadata()[0])

    def test_bad_tensors_are_refused_before_the_call(self):
        r = support.rng()
        q, kv, bt, lens = self.make(r, [10, 11])
        with self.assertRaises(mla.InvalidArgumentError) as e:
            fm.flash_mla_with_kvcache(q, kv, bt.long(), lens, 512, fm.get_mla_metadata()[0])
        self.assertIn("block_table: expected int32", str(e.exception))
        # A cache dtype other than q's (FlashMLA refuses it): the cpu backend reads an fp16 cache
        # with bf16 queries, and bf16 values are exact in fp16, so the result is the bf16 one.
        same, _ = fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, fm.get_mla_metadata()[0], causal=True)
        mixed, _ = fm.flash_mla_with_kvcache(q, kv.half(), bt, lens, 512, fm.get_mla_metadata()[0], causal=True)
        self.assertTrue(torch.allclose(mixed.float(), same.float(), atol=2e-2, rtol=2e-2))


if __name__ == "__main__":
    unittest.main()
