// FlashMLA's measured times, one table per GPU, so `mla bench --anchors` can print each
// case's ratio to them. Every table: the whole operator (split kernel + combine), bf16,
// page size 64, d_qk 576, d_v 512, random inputs; "varlen" lengths are
// max(Normal(len, len/2), s_q) per sequence. The ceilings are those measured in the same run
// as the table, kept so a reader can tell how far this run's machine is from that one.
#pragma once

#include <cstdint>
#include <span>

namespace mla::cli {

struct AnchorCase {
  const char* label;
  int64_t batch, s_q, heads, seqlen;
  bool varlen, causal;
  double flashmla_us;
};

struct AnchorTable {
  const char* key;       // the --anchor-gpu value and the JSON "anchor_gpu"
  const char* gpu;       // as printed: "H200"
  const char* measured;  // when and how the FlashMLA times were taken
  double copy_gbps, matmul_tflops;
  std::span<const AnchorCase> cases;
};

// NVIDIA H100 80GB HBM3 (132 SMs), CUDA 13.0, 2026-11-22: median of 50 launches timed with
// CUDA events.
inline constexpr AnchorCase kH100Cases[] = {
    {"memory-bound", 128, 1, 16, 4096, false, false, 241},
    {"memory-bound", 128, 1, 16, 8192, false, false, 431},
    {"memory-bound", 128, 1, 32, 8192, false, false, 444},
    {"memory-bound", 128, 1, 64, 8192, false, false, 448},
    {"balanced", 128, 1, 128, 8192, false, false, 547},
    {"balanced, varlen", 128, 1, 128, 8192, true, false, 569},
    {"compute-bound, causal, varlen", 128, 2, 128, 8192, true, true, 881},
    {"compute-bound, causal, varlen", 128, 2, 128, 16384, true, true, 1792},
    {"compute-bound, causal, varlen", 128, 2, 128, 32768, true, true, 3549},
    {"small batch, long", 2, 1, 128, 32768, false, false, 75},
    {"small batch, long", 8, 1, 16, 65536, false, false, 239},
};

// NVIDIA H200 (132 SMs, HBM3e), CUDA 13.0, 2026-11-29: FlashMLA in the same process as the
// library, on the same inputs, each timed as a CUDA graph of 20 back-to-back calls (median of
// 5 replays). The last four rows are shapes the H100 table lacks.
inline constexpr AnchorCase kH200Cases[] = {
    {"mem h16 4k", 128, 1, 16, 4096, false, false, 147.0},
    {"mem h16 8k", 128, 1, 16, 8192, false, false, 286.1},
    {"mem h32 8k", 128, 1, 32, 8192, false, false, 290.0},
    {"mem h64 8k", 128, 1, 64, 8192, false, false, 300.9},
    {"bal h128 8k", 128, 1, 128, 8192, false, false, 483.3},
    {"bal h128 8k varlen", 128, 1, 128, 8192, true, false, 487.9},
    {"cmp s_q2 8k", 128, 2, 128, 8192, true, true, 924.5},
    {"cmp s_q2 16k", 128, 2, 128, 16384, true, true, 1819.6},
    {"cmp s_q2 32k", 128, 2, 128, 32768, true, true, 3654.1},
    {"small b2 h128 32k", 2, 1, 128, 32768, false, false, 49.6},
    {"small b8 h16 64k", 8, 1, 16, 65536, false, false, 152.0},
    {"b1 h128 64k", 1, 1, 128, 65536, false, false, 52.9},
    {"b64 h128 4k", 64, 1, 128, 4096, false, false, 115.6},
    {"mtp s_q4 h32 4k", 32, 4, 32, 4096, true, true, 81.7},
    {"b16 h16 16k varlen", 16, 1, 16, 16384, true, false, 95.7},
};

inline constexpr AnchorTable kAnchorTables[] = {
    {"h100", "H100", "2026-11-22, median of 50 launches (CUDA events)", 3001, 776, kH100Cases},
    {"h200", "H200", "2026-11-29, CUDA graph of 20 calls, same process as the library", 4262, 790, kH200Cases},
};

}  // namespace mla::cli
