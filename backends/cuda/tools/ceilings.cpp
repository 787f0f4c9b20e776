#include "ceilings.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "mla/error.hpp"
#include "mla/half.hpp"

namespace mla::cuda_tools {
namespace {

void ck(cudaError_t s, const char* what) {
  if (s != cudaSuccess) fail(ErrorCode::device_error, std::string(what) + ": " + cudaGetErrorString(s));
}
void ckb(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail(ErrorCode::device_error, std::string(what) + ": cublas status " + std::to_string(s));
}

template <typename Fn>
double median_ms(Fn&& fn, int warmup, int iters) {
  cudaEvent_t a, b;
  ck(cudaEventCreate(&a), "cudaEventCreate");
  ck(cudaEventCreate(&b), "cudaEventCreate");
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    ck(cudaEventRecord(a), "cudaEventRecord");
    fn();
    ck(cudaEventRecord(b), "cudaEventRecord");
    ck(cudaEventSynchronize(b), "cudaEventSynchronize");
    float t = 0;
    ck(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Random (never zero) bf16 data: a 16 Mi host pool tiled over the buffer.
void fill(void* dst, size_t bytes) {
  std::vector<uint16_t> pool(size_t{16} << 20);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (auto& v : pool) v = float_to_bf16(normal(rng));
  const size_t chunk = std::min(bytes, pool.size() * 2);
  ck(cudaMemcpy(dst, pool.data(), chunk, cudaMemcpyHostToDevice), "cudaMemcpy");
  for (size_t off = chunk; off < bytes; off += chunk)
    ck(cudaMemcpy(static_cast<char*>(dst) + off, dst, std::min(chunk, bytes - off), cudaMemcpyDeviceToDevice), "cudaMemcpy");
}

}  // namespace

double measure_copy_gbps() {
  const size_t bytes = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  ck(cudaMalloc(&a, bytes), "cudaMalloc");
  ck(cudaMalloc(&b, bytes), "cudaMalloc");
  fill(a, bytes);
  const double ms = median_ms([&] { ck(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "copy"); }, 3, 20);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
}

double measure_matmul_tflops(int n) {
  const size_t bytes = size_t(n) * n * 2;
  void *a = nullptr, *b = nullptr, *c = nullptr;
  ck(cudaMalloc(&a, bytes), "cudaMalloc");
  ck(cudaMalloc(&b, bytes), "cudaMalloc");
  ck(cudaMalloc(&c, bytes), "cudaMalloc");
  fill(a, bytes);
  fill(b, bytes);
  cublasHandle_t h = nullptr;
  ckb(cublasCreate(&h), "cublasCreate");
  const float one = 1.f, zero = 0.f;
  const double ms = median_ms(
      [&] {
        ckb(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n, &zero, c,
                         CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx");
      },
      3, 20);
  cublasDestroy(h);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return 2.0 * double(n) * n * n / (ms * 1e-3) / 1e12;
}

}  // namespace mla::cuda_tools
