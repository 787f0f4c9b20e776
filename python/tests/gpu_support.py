"""Inputs for the GPU tests, with torch only (a PyTorch install need not bring NumPy): the same
rules as support.py — fresh random values (seed printed; MLA_TEST_SEED replays), NaN in KV rows
past each length and in blocks no sequence uses, junk ids in unused block-table entries,
shuffled physical blocks."""
import os
import random

import torch

SOURCE_DIR = os.environ.get("MLA_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
JUNK_BLOCK_ID = 2147480000


def generator():
    seed = int(os.environ.get("MLA_TEST_SEED") or random.SystemRandom().randrange(1 << 31))
    print(f"seed {seed}")
    return torch.Generator().manual_seed(seed)


def latent_case(gen, lens, s_q=1, h_q=128, dtype=torch.bfloat16, page_size=64, h_kv=1, d_qk=576, device="cuda"):
    """dict(q, kv_cache, block_table, cache_seqlens) on `device`; one spare column per row."""
    used = [-(-n // page_size) for n in lens]
    max_blocks = max(1, max(used) + 1)
    num_blocks = sum(used) + 2
    kv = torch.rand(num_blocks, page_size, h_kv, d_qk, generator=gen) * 2 - 1
    ids = torch.randperm(num_blocks, generator=gen).to(torch.int32)
    table = torch.full((len(lens), max_blocks), JUNK_BLOCK_ID, dtype=torch.int32)
    taken = torch.zeros(num_blocks, dtype=torch.bool)
    k = 0
    for i, n in enumerate(lens):
        table[i, :used[i]] = ids[k:k + used[i]]
        taken[ids[k:k + used[i]].long()] = True
        k += used[i]
        if n % page_size:
            kv[table[i, used[i] - 1], n % page_size:] = float("nan")
    kv[~taken] = float("nan")
    q = torch.rand(len(lens), s_q, h_q, d_qk, generator=gen) * 2 - 1
    return dict(q=q.to(dtype).to(device), kv_cache=kv.to(dtype).to(device), block_table=table.to(device),
                cache_seqlens=torch.tensor(lens, dtype=torch.int32, device=device))


def corrupt_one_valid_output(out, lens):
    """Adds 1 to one element of a sequence that has keys: a reference check must then fail."""
    i = next(j for j, n in enumerate(lens.tolist()) if n > 0)
    out[i, 0, 0, 0] += 1
