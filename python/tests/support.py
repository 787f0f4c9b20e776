"""Shared helpers of the Python tests: random decode inputs in the library's own style (fresh
values each run, NaN in KV rows past each length and in never-used blocks, junk ids in unused
block-table entries, shuffled physical blocks) and the configs the tests run on."""
import os

import numpy as np

SOURCE_DIR = os.environ.get("MLA_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = {
    "cpu": os.path.join(SOURCE_DIR, "configs", "cpu.json"),
    "sim_tpu": os.path.join(SOURCE_DIR, "configs", "sc11_fp300.json"),
}
JUNK_BLOCK_ID = 2147480000  # what FlashMLA's tests put in unused entries: never a valid block


def rng():
    """A fresh generator; the seed is printed so a failure can be replayed (MLA_TEST_SEED)."""
    seed = int(os.environ.get("MLA_TEST_SEED") or np.random.SeedSequence().entropy % (1 << 32))
    print(f"seed {seed}")
    return np.random.default_rng(seed)


def paged(r, lens, page_size, h_kv, d_qk, spare_blocks=2):
    """kv_cache float32 [num_blocks, page, h_kv, d_qk] and block_table int32 [b, max_blocks]:
    blocks shuffled, rows past each length NaN, unused entries junk, spare blocks NaN."""
    lens = np.asarray(lens, dtype=np.int32)
    max_blocks = max(1, int(-(-int(lens.max()) // page_size)) + 1)  # one column more than needed
    used = [int(-(-int(n) // page_size)) for n in lens]
    num_blocks = sum(used) + spare_blocks
    kv = r.uniform(-1, 1, size=(num_blocks, page_size, h_kv, d_qk)).astype(np.float32)
    ids = r.permutation(num_blocks).astype(np.int32)
    table = np.full((len(lens), max_blocks), JUNK_BLOCK_ID, dtype=np.int32)
    taken = set()
    k = 0
    for i, n in enumerate(lens):
        for j in range(used[i]):
            table[i, j] = ids[k]
            taken.add(int(ids[k]))
            k += 1
        if n % page_size:
            kv[table[i, used[i] - 1], n % page_size:] = np.nan
    for blk in range(num_blocks):
        if blk not in taken:
            kv[blk] = np.nan
    return kv, table, lens


def latent_case(r, lens, s_q=1, h_q=16, h_kv=1, page_size=64, d_c=512, d_r=64):
    kv, table, lens = paged(r, lens, page_size, h_kv, d_c + d_r)
    q = r.uniform(-1, 1, size=(len(lens), s_q, h_q, d_c + d_r)).astype(np.float32)
    return dict(q=q, kv_cache=kv, block_table=table, cache_seqlens=lens)


def absorb_case(r, lens, s_q=1, h_q=8, page_size=64, d_c=512, d_r=64, d_nope=32, d_vh=32):
    kv, table, lens = paged(r, lens, page_size, 1, d_c + d_r)
    b = len(lens)
    return dict(q_nope=r.uniform(-1, 1, size=(b, s_q, h_q, d_nope)).astype(np.float32),
                q_rope=r.uniform(-1, 1, size=(b, s_q, h_q, d_r)).astype(np.float32),
                w_uk=(r.uniform(-1, 1, size=(h_q, d_nope, d_c)) / 8).astype(np.float32),
                w_uv=(r.uniform(-1, 1, size=(h_q, d_c, d_vh)) / 8).astype(np.float32),
                kv_cache=kv, block_table=table, cache_seqlens=lens)


FLOAT_OPERANDS = ("q", "q_nope", "q_rope", "w_uk", "w_uv", "kv_cache")


def as_numpy(case, dtype):
    """The case's float operands in `dtype` ("fp32", "fp16", or "bf16" as uint16 bits)."""
    import mla
    out = {}
    for k, v in case.items():
        if k in FLOAT_OPERANDS:
            v = mla.float32_to_bf16(v) if dtype == "bf16" else v.astype({"fp32": np.float32, "fp16": np.float16}[dtype])
        out[k] = v
    return out


def as_torch(case, dtype):
    import torch
    tdt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    return {k: torch.from_numpy(v).to(tdt) if k in FLOAT_OPERANDS else torch.from_numpy(v)
            for k, v in case.items()}


def corrupt_one_valid_output(out, lens):
    """Adds 1 to one element of a sequence that has keys, so a reference check must fail."""
    i = int(np.flatnonzero(np.asarray(lens) > 0)[0])
    if hasattr(out, "numpy") and not hasattr(out, "__array_interface__"):
        out[i, 0, 0, 0] += 1  # torch
    elif out.dtype == np.uint16:
        import mla
        v = mla.bf16_to_float32(out[i, 0, 0, 0:1]) + 1
        out[i, 0, 0, 0] = mla.float32_to_bf16(v)[0]
    else:
        out[i, 0, 0, 0] += 1
