#include "write_kv_launch.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../cuda_check.hpp"
#include "mla/half.hpp"
#include "mla/kv_codec.hpp"

namespace mla::cuda {
namespace {

constexpr int kThreads = 128;  // one fp8_ds_mla scale group per pass of the block
constexpr int kGroup = 128;

__device__ float load_source(const void* base, WriteKvSource source, int64_t index) {
  switch (source) {
    case WriteKvSource::bf16: return mla::bf16_to_float(static_cast<const uint16_t*>(base)[index]);
    case WriteKvSource::fp16: return mla::fp16_to_float(static_cast<const uint16_t*>(base)[index]);
    default: return static_cast<const float*>(base)[index];
  }
}

__device__ float block_max(float v, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float m = scratch[0];
  for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, scratch[w]);
  __syncthreads();  // scratch is reused by the next group
  return m;
}

// Block (token, head): the token's d_c + d_r values quantized into its slot.
__global__ void __launch_bounds__(kThreads) write_kv_kernel(const WriteKvParams p) {
  __shared__ float scratch[kThreads / 32];
  const int64_t t = blockIdx.x;
  const int h = static_cast<int>(blockIdx.y);
  const int64_t slot = p.slots[t];
  if (slot < 0) return;  // a padding token: nothing to write
  char* token = static_cast<char*>(p.cache) + (slot / p.page_size) * p.cache_stride_block +
                (slot % p.page_size) * p.cache_stride_token + h * p.cache_stride_head;
  const int d_qk = p.d_c + p.d_r;
  auto value = [&](int c) {
    return c < p.d_c ? load_source(p.kv_c, p.source, t * p.kv_c_stride_token + h * p.kv_c_stride_head + c)
                     : load_source(p.k_pe, p.source, t * p.k_pe_stride_token + h * p.k_pe_stride_head + (c - p.d_c));
  };
  switch (p.format) {
    case WriteKvFormat::bf16:
      for (int c = threadIdx.x; c < d_qk; c += kThreads) reinterpret_cast<uint16_t*>(token)[c] = mla::float_to_bf16(value(c));
      break;
    case WriteKvFormat::fp16:
      for (int c = threadIdx.x; c < d_qk; c += kThreads) reinterpret_cast<uint16_t*>(token)[c] = mla::float_to_fp16(value(c));
      break;
    case WriteKvFormat::fp32:
      for (int c = threadIdx.x; c < d_qk; c += kThreads) reinterpret_cast<float*>(token)[c] = value(c);
      break;
    case WriteKvFormat::fp8_e4m3: {
      const float scale = p.kv_scale[0];
      for (int c = threadIdx.x; c < d_qk; c += kThreads)
        reinterpret_cast<uint8_t*>(token)[c] = kv_codec::float_to_fp8_e4m3(value(c) / scale);
      break;
    }
    case WriteKvFormat::int8:
      for (int c = threadIdx.x; c < d_qk; c += kThreads)
        reinterpret_cast<int8_t*>(token)[c] = kv_codec::float_to_int8(value(c) / p.kv_scale[c]);
      break;
    case WriteKvFormat::fp8_ds_mla: {
      auto* bytes = reinterpret_cast<uint8_t*>(token);
      const int groups = p.d_c / kGroup;
      for (int g = 0; g < groups; ++g) {
        const float v = value(g * kGroup + threadIdx.x);
        const float amax = block_max(isfinite(v) ? fabsf(v) : 0.0f, scratch);  // NaN / Inf do not set the scale
        const float scale = kv_codec::ds_mla_group_scale(amax);
        if (threadIdx.x == 0) *reinterpret_cast<float*>(bytes + p.d_c + 4 * g) = scale;
        bytes[g * kGroup + threadIdx.x] = kv_codec::float_to_fp8_e4m3(v / scale);
      }
      auto* rope = reinterpret_cast<uint16_t*>(bytes + p.d_c + 4 * groups);
      for (int r = threadIdx.x; r < p.d_r; r += kThreads) rope[r] = mla::float_to_bf16(value(p.d_c + r));
      break;
    }
  }
}

}  // namespace

void launch_write_kv(const WriteKvParams& p, cudaStream_t stream) {
  if (p.tokens == 0 || p.heads == 0) return;
  write_kv_kernel<<<dim3(static_cast<unsigned>(p.tokens), static_cast<unsigned>(p.heads)), kThreads, 0, stream>>>(p);
  check(cudaGetLastError(), "write_kv launch");
}

}  // namespace mla::cuda
