"""On the GPU: mla.flashmla against FlashMLA's own dense decode kernel on the same inputs
(the prebuilt flash_mla_dense module of the measuring harness, looked for in .gpu-bench/ at the
repository root or MLA_FLASHMLA_DIR), against the float64 reference, and inside a CUDA graph
the way a FlashMLA user captures it."""
import os
import sys
import unittest

import torch

import mla.flashmla as fm
import gpu_support as support


def load_flashmla():
    folder = os.environ.get("MLA_FLASHMLA_DIR") or os.path.join(support.SOURCE_DIR, ".gpu-bench")
    if not os.path.isdir(folder):
        return None, f"no {folder}"
    sys.path.insert(0, folder)
    try:
        import flash_mla_dense
        return flash_mla_dense, folder
    except ImportError as e:
        return None, f"{folder}: {e}"


def case(gen, lens, s_q=1, h_q=128):
    c = support.latent_case(gen, lens, s_q=s_q, h_q=h_q)
    return [c[k] for k in ("q", "kv_cache", "block_table", "cache_seqlens")]


class FlashMLAOnGpu(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not torch.cuda.is_available():
            raise AssertionError("no CUDA device visible to torch: this test is for the GPU machine")

    def test_against_flashmla_kernel(self):
        flash, where = load_flashmla()
        if flash is None:
            # The stage reports this line; the comparison is the point of the stage, so fail.
            self.fail(f"FlashMLA's kernel is not importable ({where}); copy the gpu-bench folder to .gpu-bench")
        r = support.generator()
        for s_q, causal, h_q in ((1, False, 128), (2, True, 128), (1, False, 16), (4, True, 32)):
            with self.subTest(s_q=s_q, causal=causal, h_q=h_q):
                q, kv, bt, lens = case(r, [5, 64, 1000, 2500, 4097, 300, 128, 4000], s_q=s_q, h_q=h_q)
                meta, num_splits = fm.get_mla_metadata(lens, s_q * h_q // 1, 1)
                out, lse = fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, meta, num_splits, causal=causal)
                self.assertEqual(meta.plan.backend, "cuda")
                ref_out, ref_lse, _, _ = flash.dense_decode_fwd(q, kv, 512, lens, bt, 576 ** -0.5, causal, None, None)
                torch.cuda.synchronize()
                self.assertEqual((out.shape, out.dtype, lse.shape, lse.dtype),
                                 (ref_out.shape, ref_out.dtype, ref_lse.shape, ref_lse.dtype))
                a, b = out.double(), ref_out.double()
                rel = ((a - b).norm() / b.norm()).item()
                fin = torch.isfinite(ref_lse)
                lse_err = (lse - ref_lse)[fin].abs().max().item()
                print(f"s_q {s_q} causal {causal} h_q {h_q}: rel L2 vs FlashMLA {rel:.2e}, lse max abs {lse_err:.2e}, "
                      f"kernel {meta.plan.kernel_name}")
                self.assertLess(rel, 1e-2)
                self.assertLess(lse_err, 1e-2)
                self.assertTrue(torch.equal(torch.isfinite(lse), fin))
                self.assertTrue(meta.plan.check(out, lse, q=q, kv_cache=kv, block_table=bt, cache_seqlens=lens).passed)

    def test_flashmla_call_in_a_cuda_graph(self):
        r = support.generator()
        q, kv, bt, lens = case(r, [500, 70, 2000])
        # Warm-up step outside the graph, as CUDA-graph users do (it also fills the plan's
        # workspace pool, so the schedule made during capture needs no allocation).
        meta, _ = fm.get_mla_metadata()
        fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, meta, causal=False)
        torch.cuda.synchronize()
        del meta
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            meta, _ = fm.get_mla_metadata()
            out, lse = fm.flash_mla_with_kvcache(q, kv, bt, lens, 512, meta)
        q.copy_(torch.rand_like(q) * 2 - 1)
        lens.copy_(torch.tensor([499, 69, 1990], dtype=torch.int32))  # shorter: rows past the old ones are NaN
        graph.replay()
        torch.cuda.synchronize()
        result = meta.plan.check(out, lse, q=q, kv_cache=kv, block_table=bt, cache_seqlens=lens)
        self.assertTrue(result.passed, result.summary)


if __name__ == "__main__":
    unittest.main()
