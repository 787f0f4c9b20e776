// Reading and writing a paged KV cache of any format on the host: the one routine that gathers
// a sequence's keys as float (the reference, the cpu backend's generic path and sim_tpu read
// through it) and write_kv (DESIGN's concat_and_cache_mla: quantize new tokens into their slots).
#pragma once

#include <cstdint>

#include "mla/problem.hpp"
#include "mla/tensor.hpp"

namespace mla {

// Address of token (block, offset) of KV head `head` in a cache view (strides in elements).
inline const void* kv_token(const TensorView& kv_cache, int64_t block, int64_t offset, int64_t head) {
  const int64_t off = block * kv_cache.strides[0] + offset * kv_cache.strides[1] + head * kv_cache.strides[2];
  return static_cast<const char*>(kv_cache.data) + off * static_cast<int64_t>(dtype_size(kv_cache.dtype));
}

// Keys [begin, begin + count) of sequence `seq` for KV head `kv_head`, dequantized by the
// problem's format: out[j * d_qk + c]. Reads the block table row of `seq`; no bounds checks
// (validate_indices first when the indices are untrusted).
void gather_keys_f32(const Problem& problem, const RunArgs& args, int64_t seq, int64_t kv_head, int64_t begin,
                     int64_t count, float* out);

// What write_kv writes: T new tokens, quantized to the cache's format, into their slots.
struct WriteKvArgs {
  KvFormat kv_format = KvFormat::bf16;
  TensorView kv_c;          // [T, d_c] (h_kv 1) or [T, h_kv, d_c]; bf16, fp16 or fp32
  TensorView k_pe;          // [T, d_r] or [T, h_kv, d_r]; the dtype of kv_c
  TensorView slot_mapping;  // int64 [T]: block * page_size + offset; a negative slot is skipped
  TensorView kv_cache;      // [num_blocks, page_size, h_kv, token elements] of the format's element
  TensorView kv_scale;      // as RunArgs::kv_scale: fp32 [1] (fp8_e4m3), [d_c + d_r] (int8), else empty
};

struct WriteKvOptions {
  // Read slot_mapping and reject a slot >= num_blocks * page_size before anything is written.
  // Host backends always check (it is free there); a device backend copies the slots to the
  // host and synchronises when this is set.
  bool validate_slots = false;
};

// Shapes, dtypes and memory space of every write_kv operand (Error(invalid_argument) naming it).
void validate_write_kv(const WriteKvArgs& args, MemorySpace space);
// Every slot in [-inf, num_blocks * page_size): negatives are skips, others must be in range.
void validate_slots(const WriteKvArgs& args, const int64_t* slots);
// write_kv on host memory: checks every slot first, then writes; tokens with the same slot
// are written in order (the last wins). Nothing outside the named slots changes.
void write_kv_host(const WriteKvArgs& args);

}  // namespace mla
