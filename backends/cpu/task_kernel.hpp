// One unit of CPU work: a group of query rows (heads sharing one KV head, times query tokens)
// against a range of one sequence's keys, with online softmax over KV tiles. Two
// implementations: AVX-512 BF16 (bf16 queries and a bf16 cache, CPUs with avx512_bf16) and the
// Highway one (fp32 arithmetic, any query dtype and any KV format, one copy per SIMD target;
// simd_targets.hpp picks it).
#pragma once

#include <cstdint>
#include <vector>

#include "mla/dtype.hpp"
#include "mla/kv_format.hpp"

namespace mla::cpu {

struct TaskArgs {
  int rows = 0;                        // query rows in this task
  const void* const* q_rows = nullptr; // rows pointers, each d_qk elements of `dtype`
  const int64_t* visible = nullptr;    // per row: keys [0, visible) may be attended (causal)
  int64_t begin = 0, end = 0;          // key range of this task; end <= sequence length
  const int32_t* block_row = nullptr;  // this sequence's block-table row
  const void* kv = nullptr;            // kv_cache base
  int64_t page_size = 0;
  int64_t block_stride = 0;            // cache elements between blocks
  int64_t token_stride = 0;            // cache elements between tokens of a block
  int64_t head_offset = 0;             // cache elements to this KV head inside a token
  int d_qk = 0, d_v = 0;               // d_v is the latent width d_c; d_qk - d_v the rope width
  int tile = 64;                       // keys per online-softmax step
  float scale = 1.0f;
  DType dtype = DType::bf16;           // of the query rows
  KvFormat kv_format = KvFormat::bf16; // of the cache tokens
  // The format's kv_scale as d_qk factors (fp8_e4m3: one value repeated, int8: per channel),
  // null for formats without one. The keys are dequantized without it, and it is folded in
  // instead: q_c * s_c for the scores, out_c * s_c (c < d_v) for P.V, so a tile costs no
  // per-element scale multiply and the scale is applied rows x d_qk times, not tokens x d_qk.
  const float* kv_fold = nullptr;
  float* out = nullptr;                // [rows, d_v] normalised output
  float* lse = nullptr;                // [rows] natural log; -inf when nothing was attended
};

// Buffers a thread reuses across tasks.
struct TaskScratch {
  std::vector<float> acc, scores, row_max, row_sum, alpha;
  std::vector<uint32_t> q_packed, p_packed, v_packed;
  std::vector<uint16_t> kv_bf16;  // the AVX-512 BF16 kernel's tile of an 8-bit cache, as bf16 rows
  std::vector<float> q_f32, q_t, kv_f32;
  std::vector<int32_t> visible;
  std::vector<const void*> key_rows;
  std::vector<const float*> f32_rows, f32_shifted;
  std::vector<const uint16_t*> bf16_q, bf16_rows, bf16_shifted;  // bf16 rows as raw bits
};

using TaskKernel = void (*)(const TaskArgs& args, TaskScratch& scratch);

void run_task_avx512_bf16(const TaskArgs& args, TaskScratch& scratch);

}  // namespace mla::cpu
