// The GPU write_kv: new tokens quantized to the cache's format and scattered into their slots
// (vLLM's concat_and_cache_mla), one kernel for every format, asynchronous on the stream and
// capturable in a CUDA graph. The conversions are mla/kv_codec.hpp and mla/half.hpp, the same
// functions the host traits use, so both sides write the same bytes.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace mla::cuda {

// mla::KvFormat and mla::DType values (checked where both are visible, in cuda_backend.cpp):
// this header is compiled by nvcc in C++17 and cannot include the C++20 core headers.
enum class WriteKvFormat : int { bf16 = 1, fp16 = 2, fp32 = 3, fp8_e4m3 = 4, fp8_ds_mla = 5, int8 = 6 };
enum class WriteKvSource : int { bf16 = 0, fp16 = 1, fp32 = 2 };

struct WriteKvParams {
  WriteKvFormat format = WriteKvFormat::bf16;
  WriteKvSource source = WriteKvSource::bf16;  // dtype of kv_c and k_pe
  int d_c = 512, d_r = 64;
  int heads = 1;
  int64_t tokens = 0;
  const void* kv_c = nullptr;  // strides in elements
  int64_t kv_c_stride_token = 0, kv_c_stride_head = 0;
  const void* k_pe = nullptr;
  int64_t k_pe_stride_token = 0, k_pe_stride_head = 0;
  const int64_t* slots = nullptr;
  void* cache = nullptr;       // strides in bytes
  int64_t cache_stride_block = 0, cache_stride_token = 0, cache_stride_head = 0;
  int64_t page_size = 1;
  const float* kv_scale = nullptr;
};

// Throws mla::Error(device_error) when the launch fails.
void launch_write_kv(const WriteKvParams& params, cudaStream_t stream);

}  // namespace mla::cuda
