// Every CUDA runtime and cuBLAS call and every launch goes through these: a failure becomes
// mla::Error(device_error) carrying the CUDA or cuBLAS error name and string; nothing aborts.
#pragma once

#include <string>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "mla/error.hpp"

namespace mla::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    fail(ErrorCode::device_error, std::string("cuda: ") + what + ": " + cudaGetErrorName(status) + " (" +
                                      cudaGetErrorString(status) + ")");
}

// After a <<<...>>> launch: configuration errors show at once, execution errors later.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail(ErrorCode::device_error, std::string("cuda: ") + what + ": " + cublasGetStatusName(status) + " (" +
                                      cublasGetStatusString(status) + ")");
}

}  // namespace mla::cuda
