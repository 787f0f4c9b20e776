"""On the GPU (scripts/gpu_check.sh stage `python`): CUDA tensors on the cuda backend, torch's
current stream, CUDA-graph capture and replay, and libmla.so loaded into a PyTorch process that
has already initialised CUDA. Fails (never skips) without a GPU: it is only run where one is."""
import os
import subprocess
import sys
import unittest

import torch

import mla
import gpu_support as support

CONFIG = {"backend": "cuda", "name": "python gpu test"}


def cuda_case(gen, lens, s_q=1, h_q=128, dtype="bf16"):
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return support.latent_case(gen, lens, s_q=s_q, h_q=h_q, dtype=dt)


class LibraryInPyTorch(unittest.TestCase):
    """Runs first (classes run in name order), before any CUDA work in this process."""

    def test_library_loads_in_a_fresh_pytorch_process(self):
        # The failure this guards against was a segfault, so it runs in a child process: a
        # crash becomes a failed test with the child's output instead of killing this one.
        code = ("import torch; torch.zeros(1, device='cuda'); import mla; "
                "d = mla.open_device({'backend': 'cuda'}); print('OPENED', d.name, mla.library_path()); "
                "print(''.join(l for l in open('/proc/self/maps') if 'libstdc++' in l or 'libmla' in l))")
        r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                           env=dict(os.environ, LD_PRELOAD=""))
        print(r.stdout[-3000:], r.stderr[-3000:])
        self.assertEqual(r.returncode, 0, f"child exited {r.returncode}: {r.stderr[-2000:]}")
        self.assertIn("OPENED", r.stdout)


class TensorsOnCuda(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not torch.cuda.is_available():
            raise AssertionError("no CUDA device visible to torch: this test is for the GPU machine")
        torch.zeros(1, device="cuda")  # CUDA initialised by torch before libmla is used
        cls.dev = mla.open_device(CONFIG)
        print(f"libmla {mla.library_path()} ({mla.library_source()}), device {cls.dev.name}")

    def check(self, plan, out, lse, case):
        result = plan.check(out, lse, **case)
        self.assertTrue(result.passed, result.summary)
        bad = out.clone()
        support.corrupt_one_valid_output(bad, case["cache_seqlens"].cpu())
        self.assertFalse(plan.check(bad, lse, **case).passed)

    def test_bf16_fp16_against_reference(self):
        r = support.generator()
        for dtype, s_q, causal, h_q in (("bf16", 1, False, 128), ("bf16", 2, True, 128), ("fp16", 1, False, 16),
                                        ("bf16", 1, False, 64)):
            with self.subTest(dtype=dtype, s_q=s_q, causal=causal, h_q=h_q):
                case = cuda_case(r, [0, 1, 700, 1500], s_q=s_q, h_q=h_q, dtype=dtype)
                plan = self.dev.plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"],
                                     causal=causal)
                out, lse = plan.run(schedule=plan.schedule(case["cache_seqlens"]), **case)
                self.assertEqual((out.device.type, out.dtype), ("cuda", case["q"].dtype))
                torch.cuda.synchronize()
                self.check(plan, out, lse, case)

    def test_runs_on_the_current_stream(self):
        r = support.generator()
        case = cuda_case(r, [300, 900])
        plan = self.dev.plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"])
        sched = plan.schedule(case["cache_seqlens"])
        plan.run(schedule=sched, **case)  # warm-up
        new_q = torch.rand_like(case["q"]) * 2 - 1
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            # The new q arrives on `side` only after a long sleep: a run that used any other
            # stream would read the old q.
            torch.cuda._sleep(200_000_000)
            case["q"].copy_(new_q)
            out, lse = plan.run(schedule=sched, **case)
        torch.cuda.synchronize()
        self.check(plan, out, lse, case)

    def test_graph_capture_and_replay(self):
        r = support.generator()
        case = cuda_case(r, [65, 1000, 0, 300], s_q=2)
        plan = self.dev.plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"], causal=True)
        # A schedule made and dropped before capture leaves a workspace in the plan's pool, so
        # the schedule made during capture needs no cudaMalloc (docs/python.md).
        del_me = plan.schedule(case["cache_seqlens"])
        direct_out, direct_lse = plan.run(schedule=del_me, **case)
        torch.cuda.synchronize()
        del del_me
        out = torch.full_like(direct_out, float("nan"))
        lse = torch.full_like(direct_lse, float("nan"))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            sched = plan.schedule(case["cache_seqlens"])
            plan.run(schedule=sched, out=out, lse=lse, **case)
        graph.replay()
        torch.cuda.synchronize()
        self.assertTrue(torch.equal(out, direct_out) and torch.equal(lse, direct_lse),
                        "replay differs from the direct call")
        # New values in the captured buffers and shorter lengths (within the rows each sequence
        # has; rows past the old lengths are NaN): replay again.
        case["q"].copy_(torch.rand_like(case["q"]) * 2 - 1)
        case["cache_seqlens"].copy_(torch.tensor([64, 999, 0, 1], dtype=torch.int32))
        graph.replay()
        torch.cuda.synchronize()
        self.check(plan, out, lse, case)


if __name__ == "__main__":
    unittest.main()
