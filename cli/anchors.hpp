// The FlashMLA figures of ANCHORS.md (H100 SXM, CUDA 13.0, 2026-11-22), so `mla bench
// --anchors` can print each case's ratio to them. Times are the whole operator, bf16, page 64.
#pragma once

#include <cstdint>

namespace mla::cli {

struct AnchorCase {
  const char* label;
  int64_t batch, s_q, heads, seqlen;
  bool varlen, causal;
  double flashmla_us;
};

inline constexpr AnchorCase kAnchorCases[] = {
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

}  // namespace mla::cli
