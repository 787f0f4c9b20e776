"""Quantized KV caches from Python: mla.write_kv against an independent implementation of each
format's bytes (fp8 e4m3 by nearest-value search over the 127 finite codes, int8 by
round-half-even, fp8_ds_mla's power-of-two group scales), padding slots skipped and every other byte left as it was, then
runs on cpu and sim_tpu over those caches checked against the float64 reference, and
Device.supports. NumPy spells fp8 as uint8 bit patterns."""
import unittest

import numpy as np
import torch

import mla
import support

D_C, D_R, PAGE = 512, 64, 16


def _fp8_values():
    """The 127 non-negative finite e4m3 values, by code (0x00 .. 0x7e)."""
    codes = np.arange(127)
    exp, mant = codes >> 3, codes & 7
    return np.where(exp == 0, mant * 2.0 ** -9, (1 + mant / 8.0) * 2.0 ** (exp - 7.0))


FP8_VALUES = _fp8_values()


def fp8_bytes(x):
    """fp8 e4m3 bits of float32 x: the nearest value, ties to the even code, saturating at +-448."""
    v = x.numpy()
    a = np.minimum(np.abs(v.astype(np.float64)), 448.0)
    hi = np.clip(np.searchsorted(FP8_VALUES, a), 0, 126)
    lo = np.clip(hi - 1, 0, 126)
    d_lo, d_hi = a - FP8_VALUES[lo], FP8_VALUES[hi] - a
    code = np.where(d_lo < d_hi, lo, np.where(d_hi < d_lo, hi, np.where(lo % 2 == 0, lo, hi)))
    sign = np.where(np.signbit(v), 0x80, 0)
    return torch.from_numpy((code | sign).astype(np.uint8))


def expected_token(values, fmt, scale):
    """One token's bytes in `fmt` (values: float32 [576]), written independently of the library."""
    if fmt == "fp8_e4m3":
        return fp8_bytes(values / scale[0])
    if fmt == "int8":
        return torch.round(values / scale).clamp(-127, 127).to(torch.int8).view(torch.uint8)
    if fmt == "fp8_ds_mla":
        parts = []
        scales = []
        for g in range(D_C // 128):
            group = values[g * 128:(g + 1) * 128]
            amax = float(group.abs().max())
            x = max(np.float32(amax) / np.float32(448.0), np.float32(1e-4))
            s = np.float32(2.0) ** np.ceil(np.log2(np.float64(x)))
            scales.append(np.float32(s))
            parts.append(fp8_bytes(group / torch.tensor(np.float32(s))))
        scale_bytes = torch.from_numpy(np.array(scales, dtype=np.float32).view(np.uint8).copy())
        rope = values[D_C:].to(torch.bfloat16).view(torch.uint8)
        return torch.cat(parts + [scale_bytes, rope])
    raise AssertionError(fmt)


def cache_for(fmt, blocks):
    width = D_C + 4 * (D_C // 128) + 2 * D_R if fmt == "fp8_ds_mla" else D_C + D_R
    # fp8_e4m3 as uint8 bits: Debian's torch predates torch.float8_e4m3fn.
    dtype = {"fp8_e4m3": torch.uint8, "int8": torch.int8, "fp8_ds_mla": torch.uint8}[fmt]
    cache = torch.full((blocks, PAGE, 1, width), 0x7B, dtype=torch.uint8)  # poison: must survive
    return cache.view(dtype)


def scale_for(fmt, values):
    if fmt == "fp8_e4m3":
        return (values.abs().amax() / 448.0).reshape(1).float()
    if fmt == "int8":
        return (values.abs().amax(dim=0) / 127.0).float()
    return None


class WriteKv(unittest.TestCase):
    def test_bytes_equal_an_independent_implementation(self):
        r = support.rng()
        dev = mla.open_device(support.CONFIGS["cpu"])
        for fmt in ("fp8_e4m3", "int8", "fp8_ds_mla"):
            with self.subTest(fmt=fmt):
                tokens, blocks = 20, 3
                values = torch.from_numpy(r.normal(size=(tokens, D_C + D_R)).astype(np.float32)).to(torch.bfloat16).float()
                values[3, 7] = 900.0  # saturates in the per-tensor / group formats
                scale = scale_for(fmt, values)
                if fmt != "int8" and scale is not None:
                    scale = scale / 4  # a scale calibrated on smaller values: fp8 saturates at 448
                slots = torch.from_numpy(r.permutation(blocks * PAGE)[:tokens].astype(np.int64))
                slots[5] = -1  # a padding token: skipped
                cache = cache_for(fmt, blocks)
                before = cache.view(torch.uint8).clone()
                mla.write_kv(dev, values[:, :D_C].to(torch.bfloat16), values[:, D_C:].to(torch.bfloat16), slots, cache,
                             kv_scale=scale, kv_format=fmt)
                raw = cache.view(torch.uint8).reshape(blocks * PAGE, -1)
                written = set()
                for t in range(tokens):
                    if slots[t] < 0:
                        continue
                    written.add(int(slots[t]))
                    want = expected_token(values[t], fmt, scale)
                    self.assertTrue(torch.equal(raw[int(slots[t])], want), f"token {t} slot {int(slots[t])}")
                untouched = [s for s in range(blocks * PAGE) if s not in written]
                self.assertTrue(torch.equal(raw[untouched], before.reshape(blocks * PAGE, -1)[untouched]))

    def test_slot_past_the_cache_is_refused_before_writing(self):
        dev = mla.open_device(support.CONFIGS["sim_tpu"])
        cache = cache_for("int8", 2)
        before = cache.clone()
        slots = torch.tensor([0, 2 * PAGE], dtype=torch.int64)
        kv_c = torch.ones(2, D_C, dtype=torch.float32)
        k_pe = torch.ones(2, D_R, dtype=torch.float32)
        with self.assertRaises(mla.InvalidArgumentError) as e:
            mla.write_kv(dev, kv_c, k_pe, slots, cache, kv_scale=torch.ones(D_C + D_R))
        self.assertIn("slot_mapping[1]", str(e.exception))
        self.assertTrue(torch.equal(cache, before))
        with self.assertRaises(mla.InvalidArgumentError):  # int8 needs its per-channel scale
            mla.write_kv(dev, kv_c, k_pe, slots[:1], cache)


class RunsOnQuantizedCaches(unittest.TestCase):
    def test_every_format_matches_the_reference(self):
        r = support.rng()
        lens = [0, 30, 70]
        for backend in ("cpu", "sim_tpu"):
            dev = mla.open_device(support.CONFIGS[backend])
            for fmt in ("fp8_e4m3", "int8", "fp8_ds_mla"):
                with self.subTest(backend=backend, fmt=fmt):
                    case = support.as_torch(support.latent_case(r, lens, s_q=2, h_q=16, page_size=PAGE), "bf16")
                    plain = case["kv_cache"].float()  # NaN rows past the lengths stay out of the scales
                    finite = plain[torch.isfinite(plain).all(dim=-1).squeeze(-1)].reshape(-1, D_C + D_R)
                    scale = scale_for(fmt, finite)
                    cache = cache_for(fmt, plain.shape[0])
                    slots = torch.arange(plain.shape[0] * PAGE, dtype=torch.int64)
                    rows = plain.reshape(-1, D_C + D_R)
                    ok = torch.isfinite(rows).all(dim=-1)
                    slots[~ok] = -1  # poisoned rows are never written: the poison stays
                    mla.write_kv(dev, rows[:, :D_C].contiguous(), rows[:, D_C:].contiguous(), slots, cache,
                                 kv_scale=scale, kv_format=fmt)
                    plan = dev.plan(case["q"], cache, case["block_table"], causal=True, kv_format=fmt)
                    self.assertEqual(plan.problem["kv_format"], fmt)
                    out, lse = plan.run(case["q"], cache, case["block_table"], case["cache_seqlens"], kv_scale=scale)
                    check = plan.check(out, lse, q=case["q"], kv_cache=cache, block_table=case["block_table"],
                                       cache_seqlens=case["cache_seqlens"], kv_scale=scale)
                    self.assertTrue(check.passed, check.summary)
                    support.corrupt_one_valid_output(out, lens)  # the check can fail
                    self.assertFalse(plan.check(out, lse, q=case["q"], kv_cache=cache, block_table=case["block_table"],
                                                cache_seqlens=case["cache_seqlens"], kv_scale=scale).passed)

    def test_numpy_fp8_cache_is_uint8_bits_with_kv_format(self):
        r = support.rng()
        dev = mla.open_device(support.CONFIGS["cpu"])
        case = support.latent_case(r, [40], h_q=16, page_size=PAGE)
        rows = np.nan_to_num(case["kv_cache"].reshape(-1, D_C + D_R), nan=0.0).astype(np.float32)
        scale = np.array([np.abs(rows).max() / 448.0], dtype=np.float32)
        cache = np.zeros(case["kv_cache"].shape, dtype=np.uint8)
        mla.write_kv(dev, rows[:, :D_C].copy(), rows[:, D_C:].copy(), np.arange(len(rows), dtype=np.int64), cache,
                     kv_scale=scale, kv_format="fp8_e4m3")
        q = case["q"]
        plan = dev.plan(q, cache, case["block_table"], kv_format="fp8_e4m3")
        out, lse = plan.run(q, cache, case["block_table"], case["cache_seqlens"], kv_scale=scale)
        check = plan.check(out, lse, q=q, kv_cache=cache, block_table=case["block_table"],
                           cache_seqlens=case["cache_seqlens"], kv_scale=scale)
        self.assertTrue(check.passed, check.summary)


class Supports(unittest.TestCase):
    def test_answers_without_raising(self):
        dev = mla.open_device(support.CONFIGS["cpu"])
        yes = dev.supports(batch=1, h_q=16, num_blocks=2, max_blocks_per_seq=2, kv_format="fp8_ds_mla")
        self.assertTrue(yes)
        no = dev.supports(batch=1, h_q=16, h_kv=3, num_blocks=2, max_blocks_per_seq=2)
        self.assertFalse(no)
        self.assertEqual(no.code, 1)  # invalid_argument
        self.assertIn("h_q", no.reason)
        with self.assertRaises(mla.InvalidArgumentError):
            dev.supports(batch=1, kv_format="fp4")
        self.assertEqual(set(mla.KV_FORMATS), {"bf16", "fp16", "fp32", "fp8_e4m3", "fp8_ds_mla", "int8"})


if __name__ == "__main__":
    unittest.main()
