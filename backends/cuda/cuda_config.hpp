// The cuda backend's config section ("cuda": {...}), documented in docs/backends/cuda.md.
// Parsed in every build (also without the CUDA toolkit) so configs validate anywhere.
#pragma once

#include <cstdint>
#include <string>

#include "mla/config.hpp"

namespace mla::cuda {

struct CudaConfig {
  int64_t device_index = 0;
  std::string kernel = "auto";   // "auto", "portable", "hopper" or "hopper_narrow"
  int64_t ctas_per_sm = 0;       // persistent CTAs per SM; 0: the occupancy the kernel reaches
  int64_t min_split_tokens = 256;  // a split-KV chunk never holds fewer keys than this
  int64_t max_stages = 4;        // cp.async pipeline depth cap of the portable kernel
};

CudaConfig parse_cuda_config(ConfigReader& root);

}  // namespace mla::cuda
