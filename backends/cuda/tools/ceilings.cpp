#include "ceilings.hpp"

#include "../cuda_ceilings.hpp"

namespace mla::cuda_tools {

double measure_copy_gbps() { return cuda::measure_copy_gbps(20); }

double measure_matmul_tflops(int n) { return cuda::measure_matmul_tflops(n, 20); }

}  // namespace mla::cuda_tools
