// The two ceilings a benchmark is judged against, measured on the current CUDA device in the
// same run: a large device-to-device copy and a cuBLAS bf16 matmul. CudaDevice reports the
// matmul one through Device::measure_matmul_tflops; mla_cuda_bench prints both.
#pragma once

namespace mla::cuda {

// GB/s (bytes read + written) of a 1 GiB cudaMemcpyAsync device to device: 3 warm-up copies,
// then the median of `iters` timed with CUDA events.
double measure_copy_gbps(int iters = 20);

// TFLOP/s (2 n^3 per launch) of an n x n x n cublasGemmEx, bf16 in and out, fp32 accumulate, on
// random non-zero data: 3 warm-up launches, then the median of `iters` timed with CUDA events.
double measure_matmul_tflops(int n = 8192, int iters = 20);

}  // namespace mla::cuda
