// Runtimes hand the GPU views into larger buffers: a KV cache whose token rows are padded (16
// bytes past each row, poisoned) must decode within tolerance of the float64 reference on the
// dense host inputs, on every cuda kernel that takes it: the Hopper kernel's TMA boxes, the
// narrow kernel's per-token copies (its dense pages are one copy each), the portable kernel's
// cp.async. On sm_90 the test also checks which kernel ran, so it cannot pass on another one.
// Without a CUDA device it SKIPs with the reason.
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "mla/compare.hpp"
#include "mla/host_tensor.hpp"
#include "mla/inputs.hpp"
#include "mla/reference.hpp"
#include "mla/registry.hpp"

using namespace mla;
using mla::testing::DeviceCopy;

namespace {

// `kv` with each token row followed by `pad_bytes` of `poison` bytes (token stride = row +
// padding); the caller views it with the dense shape.
struct PaddedCache {
  HostTensor storage;
  int64_t row_elements = 0, padded_elements = 0;
};

PaddedCache pad_token_rows(const HostTensor& kv, int64_t pad_bytes, unsigned char poison) {
  const TensorView& v = kv.view();
  const size_t elem = dtype_size(v.dtype);
  PaddedCache p;
  p.row_elements = v.shape[v.rank - 1];
  p.padded_elements = p.row_elements + pad_bytes / static_cast<int64_t>(elem);
  std::vector<int64_t> shape(v.shape.begin(), v.shape.begin() + v.rank);
  shape.back() = p.padded_elements;
  p.storage = HostTensor(v.dtype, shape);
  std::memset(p.storage.data(), poison, p.storage.bytes());
  const int64_t rows = v.numel() / p.row_elements;
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(static_cast<unsigned char*>(p.storage.data()) + r * p.padded_elements * elem,
                static_cast<const unsigned char*>(kv.data()) + r * p.row_elements * elem, p.row_elements * elem);
  return p;
}

}  // namespace

TEST_CASE("cuda kernels read KV caches with padded token rows", "[cuda][kv]") {
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  const bool sm90 = mla::testing::hopper_kernel_runs_here();
  for (const char* kernel : {"auto", "portable"}) {
    auto dev = mla::testing::open_cuda_device(kernel);
    for (KvFormat format : {KvFormat::bf16, KvFormat::fp8_e4m3, KvFormat::int8, KvFormat::fp8_ds_mla})
      for (int64_t h_q : {16, 24, 32, 128}) {
        Problem p;
        p.batch = 3;
        p.h_q = h_q;
        p.dtype = DType::bf16;
        p.kv_format = format;
        InputSpec spec;
        spec.seqlens = {0, 77, 300};
        spec.seed = Catch::rngSeed() + 211u;
        HostInputs in = make_random_inputs(p, spec);
        // 0xff: NaN in bf16 and fp8_e4m3, -1 in int8 (a wrong result if read).
        const PaddedCache padded = pad_token_rows(in.kv_cache, 16, 0xff);
        INFO(kernel << " " << kv_format_name(format) << " h_q " << h_q);
        auto plan = dev->plan(in.problem);
        INFO("kernel " << plan->kernel_name());
        if (sm90 && std::string(kernel) == "auto") {
          CHECK(plan->kernel_name() == mla::testing::expected_sm90_kernel(format, h_q));
        } else {
          CHECK(plan->kernel_name().rfind("cuda_portable", 0) == 0);
        }
        std::vector<std::unique_ptr<DeviceCopy>> buffers;
        RunArgs gpu = mla::testing::upload_run_args(*dev, in.args(), buffers);
        buffers.push_back(std::make_unique<DeviceCopy>(*dev, padded.storage));
        gpu.kv_cache = buffers.back()->view;
        gpu.kv_cache.shape[gpu.kv_cache.rank - 1] = padded.row_elements;  // the dense shape over padded rows
        REQUIRE(gpu.kv_cache.strides[1] == padded.padded_elements);  // [blocks, page, h_kv = 1, width]
        const Comparison c = mla::testing::run_against_reference(*dev, *plan, gpu, in);
        INFO(c.summary());
        CHECK(c.passed);
      }
  }
}
