// The cpu backend's config section ("cpu": {...}), documented in docs/configs.md.
#pragma once

#include <cstdint>
#include <string>

#include "mla/config.hpp"

namespace mla::cpu {

struct CpuConfig {
  std::string path = "fast";  // "fast" (online softmax over KV tiles) or "reference" (float64)
  int64_t threads = 0;        // 0: every core oneTBB sees
  int64_t kv_tile_tokens = 64;
  // "auto" (Highway's pick, or the AVX-512 BF16 kernel where it applies), "avx512_bf16",
  // "portable" (Highway's fallback target) or one Highway target by name ("avx2", "neon", ...).
  std::string isa = "auto";
};

CpuConfig parse_cpu_config(ConfigReader& root);

}  // namespace mla::cpu
