// The CUDA device a config opened: its index and properties, and a guard that makes it current.
#pragma once

#include <sstream>
#include <string>

#include <cuda_runtime.h>

#include "cuda_check.hpp"

namespace mla::cuda {

struct DeviceInfo {
  int index = 0;
  cudaDeviceProp prop{};
  [[nodiscard]] std::string describe() const {
    std::ostringstream os;
    os << prop.name << " (sm_" << prop.major << prop.minor << ", " << prop.multiProcessorCount << " SMs, "
       << (prop.totalGlobalMem >> 20) << " MiB)";
    return os.str();
  }
};

class DeviceGuard {  // makes the config's device current for the calls in scope
 public:
  explicit DeviceGuard(int index) { check(cudaSetDevice(index), "cudaSetDevice"); }
};

}  // namespace mla::cuda
