// The cuda backend's config section ("cuda": {...}), documented in docs/backends/cuda.md.
// Parsed in every build (also without the CUDA toolkit) so configs validate anywhere.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mla/config.hpp"

namespace mla::cuda {

// The values of "cuda.kernel": "auto", then each kernel variant's config name in the table's
// preference order (variants/kernel_variants.cpp). Listed here too because configs validate in
// builds without the table; tests/cuda/test_cuda_backend.cpp checks that the two agree.
inline const std::vector<std::string>& kernel_choices() {
  static const std::vector<std::string> choices = {"auto", "hopper_narrow", "hopper", "portable"};
  return choices;
}

struct CudaConfig {
  int64_t device_index = 0;
  std::string kernel = "auto";   // one of kernel_choices()
  int64_t ctas_per_sm = 0;       // persistent CTAs per SM; 0: the occupancy the kernel reaches
  int64_t min_split_tokens = 256;  // a split-KV chunk never holds fewer keys than this
  int64_t max_stages = 4;        // cp.async pipeline depth cap of the portable kernel
};

CudaConfig parse_cuda_config(ConfigReader& root);

}  // namespace mla::cuda
