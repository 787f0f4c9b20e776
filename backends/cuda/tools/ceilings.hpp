// The two ceilings of METHOD.md, measured in the same run as the benchmark: a large
// device-to-device copy (bytes read + written per second) and a cuBLAS bf16 matmul. The
// measurements live in the backend (cuda_ceilings.hpp, also behind
// Device::measure_matmul_tflops); these are the names mla_cuda_bench calls them by.
#pragma once

namespace mla::cuda_tools {

double measure_copy_gbps();          // GB/s, 1 GiB buffers, median of 20
double measure_matmul_tflops(int n); // TFLOP/s of an n^3 bf16 GEMM (fp32 accumulate), median of 20

}  // namespace mla::cuda_tools
