#include "cuda_ceilings.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_check.hpp"
#include "mla/error.hpp"
#include "mla/half.hpp"

namespace mla::cuda {
namespace {

constexpr int kWarmup = 3;

// Owners of what one measurement creates, so that every path, errors included, frees it.
struct FreeBuffer {
  void operator()(void* p) const noexcept { cudaFree(p); }
};
struct DestroyStream {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
struct DestroyEvent {
  void operator()(cudaEvent_t e) const noexcept { cudaEventDestroy(e); }
};
struct DestroyCublas {
  void operator()(cublasHandle_t h) const noexcept { cublasDestroy(h); }
};
using Buffer = std::unique_ptr<void, FreeBuffer>;
using Stream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, DestroyStream>;
using Event = std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, DestroyEvent>;
using Cublas = std::unique_ptr<std::remove_pointer_t<cublasHandle_t>, DestroyCublas>;

Buffer allocate(size_t bytes) {
  void* p = nullptr;
  const cudaError_t st = cudaMalloc(&p, bytes);
  if (st == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    fail(ErrorCode::out_of_memory, "cuda: ceiling measurement: cudaMalloc of " + std::to_string(bytes) +
                                       " bytes failed (out of memory)");
  }
  check(st, "cudaMalloc(ceiling measurement)");
  return Buffer(p);
}

Stream make_stream() {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  return Stream(s);
}

Event make_event() {
  cudaEvent_t e = nullptr;
  check(cudaEventCreate(&e), "cudaEventCreate");
  return Event(e);
}

// Random bf16 values, never zero, drawn from N(0, 1): a host pool of up to 16 Mi elements
// tiled over the buffer. Returns once the data is in place.
void fill_random_bf16(void* dst, size_t bytes, uint32_t seed, cudaStream_t stream) {
  std::vector<uint16_t> pool(std::min(bytes / 2, size_t{16} << 20));
  if (pool.empty()) return;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  const uint16_t one = float_to_bf16(1.f);
  for (auto& v : pool) {
    v = float_to_bf16(normal(rng));
    if ((v & 0x7fff) == 0) v = one;  // +-0 after rounding
  }
  const size_t chunk = pool.size() * 2;
  check(cudaMemcpyAsync(dst, pool.data(), chunk, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync(fill)");
  for (size_t off = chunk; off < bytes; off += chunk)
    check(cudaMemcpyAsync(static_cast<char*>(dst) + off, dst, std::min(chunk, bytes - off), cudaMemcpyDeviceToDevice,
                          stream),
          "cudaMemcpyAsync(fill)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize(fill)");  // `pool` dies here
}

// Milliseconds of one `launch()` on `stream`: kWarmup untimed, then the median of `iters`,
// each between two CUDA events.
template <typename Launch>
double median_ms(cudaStream_t stream, int iters, Launch&& launch) {
  Event start = make_event(), stop = make_event();
  for (int i = 0; i < kWarmup; ++i) launch();
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize(warm-up)");
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    check(cudaEventRecord(start.get(), stream), "cudaEventRecord");
    launch();
    check(cudaEventRecord(stop.get(), stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop.get()), "cudaEventSynchronize");
    float t = 0;
    check(cudaEventElapsedTime(&t, start.get(), stop.get()), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  return n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
}

void check_iters(int iters) {
  if (iters < 1)
    fail(ErrorCode::invalid_argument, "cuda: ceiling measurement: iters: expected at least 1, got " +
                                          std::to_string(iters));
}

}  // namespace

double measure_copy_gbps(int iters) {
  check_iters(iters);
  const size_t bytes = size_t{1} << 30;
  Buffer a = allocate(bytes), b = allocate(bytes);
  Stream stream = make_stream();
  fill_random_bf16(a.get(), bytes, 7, stream.get());
  const double ms = median_ms(stream.get(), iters, [&] {
    check(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream.get()),
          "cudaMemcpyAsync(copy ceiling)");
  });
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
}

double measure_matmul_tflops(int n, int iters) {
  check_iters(iters);
  if (n < 1 || n > 32768)
    fail(ErrorCode::invalid_argument, "cuda: matmul ceiling: n: expected 1 to 32768, got " + std::to_string(n));
  const size_t bytes = size_t(n) * size_t(n) * 2;
  Buffer a = allocate(bytes), b = allocate(bytes), c = allocate(bytes);
  Stream stream = make_stream();
  fill_random_bf16(a.get(), bytes, 7, stream.get());
  fill_random_bf16(b.get(), bytes, 8, stream.get());
  cublasHandle_t raw = nullptr;
  check_cublas(cublasCreate(&raw), "cublasCreate");
  Cublas handle(raw);
  check_cublas(cublasSetStream(handle.get(), stream.get()), "cublasSetStream");
  const float one = 1.f, zero = 0.f;
  const double ms = median_ms(stream.get(), iters, [&] {
    check_cublas(cublasGemmEx(handle.get(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a.get(), CUDA_R_16BF, n, b.get(),
                              CUDA_R_16BF, n, &zero, c.get(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx(matmul ceiling)");
  });
  return 2.0 * double(n) * double(n) * double(n) / (ms * 1e-3) / 1e12;
}

}  // namespace mla::cuda
