#!/usr/bin/env python3
"""Writes the small hand-made safetensors seeds of fuzz/corpus/safetensors/ (kept in the repo;
rerun only to change them). Tiny widths keep the fuzzer fast: the parser and the shape checks
do not care that d_c is 6 instead of 512. latent_tiny.safetensors comes from
`mla run --batch 1 --heads 1 --seqlen 3 --page-size 4 --save-inputs`."""
import json, struct, os

def tensor_bytes(dtype, values):
    fmt = {"I32": "i", "F32": "f", "F16": "e"}[dtype]
    return struct.pack("<%d%s" % (len(values), fmt), *values)

def write(name, tensors, metadata=None):
    header, data = {}, b""
    for tname, (dtype, shape, values) in tensors.items():
        raw = tensor_bytes(dtype, values)
        header[tname] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(os.path.join(os.path.dirname(__file__), "safetensors", name), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)

def ramp(n, scale=0.1):
    return [((i * 7) % 11 - 5) * scale for i in range(n)]

# latent: q [1,1,2,10] (d_c = 10 - d_r... the reader infers d_c = 10 - 64 < 0 -> rejected, a useful seed)
write("latent_narrow.safetensors", {
    "q": ("F32", [1, 1, 2, 10], ramp(20)),
    "kv_cache": ("F32", [2, 2, 1, 10], ramp(40)),
    "block_table": ("I32", [1, 2], [1, 0]),
    "cache_seqlens": ("I32", [1], [3]),
})
# latent with d_qk = 66 (d_c = 2, d_r = 64): accepted by every check
write("latent_d66.safetensors", {
    "q": ("F16", [2, 1, 1, 66], ramp(132)),
    "kv_cache": ("F16", [3, 1, 1, 66], ramp(198)),
    "block_table": ("I32", [2, 2], [2, 0, 1, 2147480000]),
    "cache_seqlens": ("I32", [2], [2, 1]),
}, {"format": "pt"})
# absorb: d_nope 4, d_r 2, d_c 8, d_vh 4
write("absorb_small.safetensors", {
    "q_nope": ("F32", [1, 1, 2, 4], ramp(8)),
    "q_rope": ("F32", [1, 1, 2, 2], ramp(4)),
    "w_uk": ("F32", [2, 4, 8], ramp(64)),
    "w_uv": ("F32", [2, 8, 4], ramp(64)),
    "kv_cache": ("F32", [2, 2, 1, 10], ramp(40)),
    "block_table": ("I32", [1, 2], [0, 1]),
    "cache_seqlens": ("I32", [1], [4]),
})
write("empty_header.safetensors", {})
write("zero_length.safetensors", {
    "q": ("F32", [0, 1, 1, 66], []),
    "kv_cache": ("F32", [1, 1, 1, 66], ramp(66)),
    "block_table": ("I32", [0, 1], []),
    "cache_seqlens": ("I32", [0], []),
})
