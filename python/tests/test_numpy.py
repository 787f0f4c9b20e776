"""Every entry point with NumPy arrays on the cpu and sim_tpu backends, checked against the
library's float64 reference (mla_reference_check), with a negative control per check."""
import unittest

import numpy as np

import mla
import support


class NumpyOnBackends(unittest.TestCase):
    def each_backend(self):
        for name, path in support.CONFIGS.items():
            with self.subTest(backend=name):
                yield name, mla.open_device(path)

    def assert_matches_reference(self, plan, case, out, lse):
        result = plan.check(out, lse, **case)
        self.assertTrue(result.passed, result.summary)
        # Negative control: the same check must reject a wrong element.
        bad = out.copy()
        support.corrupt_one_valid_output(bad, case["cache_seqlens"])
        self.assertFalse(plan.check(bad, lse, **case).passed, "the reference check accepted a corrupted output")

    def test_latent_each_dtype_plan_from_tensors(self):
        r = support.rng()
        for backend, dev in self.each_backend():
            for dtype in ("fp32", "fp16", "bf16"):
                with self.subTest(dtype=dtype):
                    case = support.as_numpy(support.latent_case(r, [0, 1, 130], s_q=2), dtype)
                    plan = dev.plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"],
                                    causal=True, dtype="bf16" if dtype == "bf16" else None)
                    self.assertEqual(plan.backend, backend)
                    self.assertEqual(plan.problem["dtype"], dtype)
                    sched = plan.schedule(case["cache_seqlens"])
                    out, lse = plan.run(schedule=sched, **case)
                    self.assertIsInstance(out, np.ndarray)
                    self.assertEqual(out.shape, (3, 2, 16, 512))
                    self.assertEqual(out.dtype, case["q"].dtype)
                    self.assertEqual((lse.shape, lse.dtype), ((3, 16, 2), np.float32))
                    self.assertTrue(np.all(np.isinf(lse[0])), "an empty sequence gives lse = +inf")
                    self.assert_matches_reference(plan, case, out, lse)

    def test_fills_given_outputs_and_reuses_schedule_across_layers(self):
        r = support.rng()
        for _, dev in self.each_backend():
            lens = [70, 200, 5]
            first = support.latent_case(r, lens, h_q=8)
            plan = dev.plan(q=first["q"], kv_cache=first["kv_cache"], block_table=first["block_table"])
            sched = plan.schedule(first["cache_seqlens"])
            out = np.full((3, 1, 8, 512), np.nan, dtype=np.float32)
            lse = np.full((3, 8, 1), np.nan, dtype=np.float32)
            for layer in range(2):  # a new q and cache per layer, same lengths and table
                case = dict(first)
                case["q"] = r.uniform(-1, 1, size=first["q"].shape).astype(np.float32)
                case["kv_cache"] = np.where(np.isnan(first["kv_cache"]), np.nan,
                                            r.uniform(-1, 1, size=first["kv_cache"].shape)).astype(np.float32)
                got_out, got_lse = plan.run(schedule=sched, out=out, lse=lse, **case)
                self.assertIs(got_out, out)
                self.assertIs(got_lse, lse)
                self.assert_matches_reference(plan, case, out, lse)

    def test_plan_from_keywords_equals_plan_from_tensors(self):
        r = support.rng()
        case = support.latent_case(r, [10, 64], s_q=2, h_q=32, h_kv=1)
        for _, dev in self.each_backend():
            a = dev.plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"], causal=True)
            b = dev.plan(batch=2, s_q=2, h_q=32, h_kv=1, d_c=512, d_r=64, page_size=64,
                         num_blocks=case["kv_cache"].shape[0], max_blocks_per_seq=case["block_table"].shape[1],
                         causal=True, dtype="fp32")
            self.assertEqual(a.problem, b.problem)
            # Shapes alone (tuples, no dtype) work too and default to bf16.
            c = dev.plan(q=case["q"].shape, kv_cache=case["kv_cache"].shape, block_table=case["block_table"].shape)
            self.assertEqual(c.problem["dtype"], "bf16")
            out, lse = b.run(**case)  # no schedule: one is made for the call
            self.assertTrue(b.check(out, lse, **case).passed)

    def test_absorb_variant(self):
        r = support.rng()
        for _, dev in self.each_backend():
            case = support.absorb_case(r, [0, 90, 33])
            plan = dev.plan(**{k: case[k] for k in ("q_nope", "q_rope", "w_uk", "w_uv", "kv_cache", "block_table")})
            self.assertEqual(plan.problem["variant"], "absorb")
            self.assertEqual((plan.problem["d_nope"], plan.problem["d_vh"]), (32, 32))
            out, lse = plan.run(schedule=plan.schedule(case["cache_seqlens"]), **case)
            self.assertEqual(out.shape, (3, 1, 8, 32))
            self.assert_matches_reference(plan, case, out, lse)

    def test_softmax_scale_is_passed(self):
        r = support.rng()
        case = support.latent_case(r, [50], h_q=4)
        dev = mla.open_device()
        plain = dev.plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"])
        scaled = dev.plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"], softmax_scale=0.5)
        self.assertAlmostEqual(scaled.problem["softmax_scale"], 0.5)
        o1, l1 = plain.run(**case)
        o2, l2 = scaled.run(**case)
        self.assertTrue(scaled.check(o2, l2, **case).passed)
        self.assertFalse(np.allclose(l1, l2), "a different softmax_scale must change lse")

    def test_sim_tpu_reports_simulated_time(self):
        r = support.rng()
        dev = mla.open_device(support.CONFIGS["sim_tpu"])
        case = support.latent_case(r, [100, 3], h_q=16)
        plan = dev.plan(q=case["q"], kv_cache=case["kv_cache"], block_table=case["block_table"])
        plan.run(**case)
        self.assertTrue(plan.last_simulated)
        self.assertGreater(plan.last_seconds, 0)

    def test_every_way_to_open_a_device(self):
        import json
        import pathlib
        for backend, path in support.CONFIGS.items():
            with self.subTest(backend=backend):
                config = json.load(open(path))
                for how in (path, pathlib.Path(path), config, json.dumps(config)):
                    dev = mla.open_device(how)
                    self.assertEqual((dev.backend, dev.name, dev.memory_space), (backend, config["name"], "host"))
                    dev.synchronize()  # host backends: returns at once
        self.assertEqual(mla.open_device().backend, "cpu")  # the embedded default
        self.assertEqual({b.name for b in mla.backends() if b.available} >= {"cpu", "sim_tpu"}, True)
        self.assertEqual(mla.version(), mla.__version__)  # package and library of one release
        mla.set_log_level("warn")
        with self.assertRaises(mla.InvalidArgumentError):
            mla.set_log_level("loud")

    def test_bf16_helpers_round_trip(self):
        x = np.array([1.0, -2.5, 3.140625, np.inf, 0.0], dtype=np.float32)
        self.assertTrue(np.array_equal(mla.bf16_to_float32(mla.float32_to_bf16(x)), x))
        self.assertEqual(mla.float32_to_bf16(np.float32(1.00390625)).item(), 0x3F80)  # ties to even
        self.assertTrue(np.isnan(mla.bf16_to_float32(mla.float32_to_bf16(np.float32(np.nan)))))


if __name__ == "__main__":
    unittest.main()
