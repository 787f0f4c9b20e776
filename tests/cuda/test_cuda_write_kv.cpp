// write_kv on the GPU writes the same bytes as the host traits, for every format: fresh random
// tokens (with a few large values so fp8 saturates and int8 clips), padding tokens (negative
// slots) skipped, every byte outside the written slots left as it was (the cache starts as
// poison), and a slot past the cache rejected in validate mode before anything is written.
// Without a CUDA device it SKIPs with the reason.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "mla/compare.hpp"
#include "mla/host_tensor.hpp"
#include "mla/inputs.hpp"
#include "mla/kv_cache.hpp"
#include "mla/reference.hpp"
#include "mla/registry.hpp"

using namespace mla;
using mla::testing::DeviceCopy;

TEST_CASE("cuda write_kv writes the host traits' bytes for every format", "[cuda][kv]") {
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  auto dev = mla::testing::open_cuda_device();
  std::mt19937 rng(Catch::rngSeed() + 17u);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t d_c = 512, d_r = 64, blocks = 5, page = 16, tokens = 40;

  for (const KvFormatTraits& kv : kv_formats()) {
    INFO("format " << kv.name);
    HostTensor kv_c(DType::bf16, {tokens, d_c}), k_pe(DType::bf16, {tokens, d_r});
    for (int64_t i = 0; i < kv_c.view().numel(); ++i) kv_c.set(i, normal(rng) * (i % 97 == 0 ? 900.0f : 1.0f));
    for (int64_t i = 0; i < k_pe.view().numel(); ++i) k_pe.set(i, normal(rng));
    HostTensor slots(DType::int64, {tokens});
    std::vector<int64_t> order(static_cast<size_t>(blocks * page));
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t t = 0; t < tokens; ++t) slots.as<int64_t>()[t] = t % 7 == 3 ? -1 : order[static_cast<size_t>(t)];
    HostTensor cache(kv.element, {blocks, page, 1, kv.token_elements(d_c, d_r)});
    std::memset(cache.data(), 0xa5, cache.bytes());  // poison: must survive outside the written slots
    HostTensor scale;
    const std::vector<int64_t> scale_shape = kv_scale_shape(kv.format, d_c, d_r);
    if (!scale_shape.empty()) {
      scale = HostTensor(DType::fp32, scale_shape);
      for (int64_t i = 0; i < scale.view().numel(); ++i) scale.as<float>()[i] = 0.004f + 0.01f * std::fabs(normal(rng));
    }

    WriteKvArgs host;
    host.kv_format = kv.format;
    host.kv_c = kv_c.view();
    host.k_pe = k_pe.view();
    host.slot_mapping = slots.view();
    host.kv_scale = scale.view();
    HostTensor expected(kv.element, {blocks, page, 1, kv.token_elements(d_c, d_r)});
    std::memcpy(expected.data(), cache.data(), cache.bytes());
    host.kv_cache = expected.view();
    write_kv_host(host);

    DeviceCopy d_kv_c(*dev, kv_c), d_k_pe(*dev, k_pe), d_slots(*dev, slots), d_cache(*dev, cache);
    std::unique_ptr<DeviceCopy> d_scale;
    WriteKvArgs gpu = host;
    gpu.kv_c = d_kv_c.view;
    gpu.k_pe = d_k_pe.view;
    gpu.slot_mapping = d_slots.view;
    gpu.kv_cache = d_cache.view;
    if (scale.defined()) {
      d_scale = std::make_unique<DeviceCopy>(*dev, scale);
      gpu.kv_scale = d_scale->view;
    }
    dev->write_kv(gpu, nullptr, WriteKvOptions{true});
    dev->synchronize();
    HostTensor got(kv.element, {blocks, page, 1, kv.token_elements(d_c, d_r)});
    dev->copy(got.data(), d_cache.ptr, got.bytes(), CopyKind::device_to_host);
    CHECK(std::memcmp(got.data(), expected.data(), got.bytes()) == 0);

    // A slot past the cache: refused before anything is written.
    slots.as<int64_t>()[5] = blocks * page;
    dev->copy(d_slots.ptr, slots.data(), slots.bytes(), CopyKind::host_to_device);
    dev->copy(d_cache.ptr, cache.data(), cache.bytes(), CopyKind::host_to_device);
    CHECK_THROWS_AS(dev->write_kv(gpu, nullptr, WriteKvOptions{true}), Error);
    dev->synchronize();
    dev->copy(got.data(), d_cache.ptr, got.bytes(), CopyKind::device_to_host);
    CHECK(std::memcmp(got.data(), cache.data(), got.bytes()) == 0);
  }
}


// Every kernel reads every format it takes: host inputs quantized by the traits (scales
// calibrated, pages poisoned), copied operand by operand to the GPU, checked against the
// reference on the dequantized values and against the unquantized bf16 values. On sm_90 the
// default (auto) choice must be a Hopper kernel, and the narrow one for 8-bit caches with at
// most 32 query rows (h_q 8 and 16 at s_q 2); cuda.kernel = portable forces the portable kernel.
TEST_CASE("cuda runs every KV format against the reference", "[cuda][kv]") {
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  const bool hopper_here = mla::testing::hopper_kernel_runs_here();
  for (const char* kernel : {"auto", "portable"}) {
    auto dev = mla::testing::open_cuda_device(kernel);
    for (const KvFormatTraits& kv : kv_formats())
      for (DType dtype : {DType::bf16, DType::fp16})
        for (int64_t h_q : {8, 16, 128}) {
          if (!is_quantized(kv.format) && kv.element != dtype) continue;  // plain caches hold the query dtype
          Problem p;
          p.batch = 3;
          p.s_q = 2;
          p.h_q = h_q;
          p.causal = true;
          p.dtype = dtype;
          p.kv_format = kv.format;
          InputSpec spec;
          spec.seqlens = {0, 77, 300};
          spec.seed = Catch::rngSeed() + 101u;
          HostInputs in = make_random_inputs(p, spec);
          INFO(kernel << " " << kv.name << " " << dtype_name(dtype) << " h_q " << h_q);
          const Support support = dev->supports(in.problem);
          INFO(support.reason);
          REQUIRE(support.supported);
          auto plan = dev->plan(in.problem);
          const bool hopper = plan->kernel_name().find("hopper") != std::string::npos;
          CHECK(hopper == (std::string(kernel) == "auto" && hopper_here));
          if (std::string(kernel) == "auto" && hopper_here)
            CHECK(plan->kernel_name() == mla::testing::expected_sm90_kernel(kv.format, h_q * p.s_q));
          std::vector<std::unique_ptr<DeviceCopy>> buffers;
          RunArgs gpu = mla::testing::upload_run_args(*dev, in.args(), buffers);
          const Comparison c = mla::testing::run_against_reference(*dev, *plan, gpu, in);
          INFO("kernel " << plan->kernel_name() << ": " << c.summary());
          CHECK(c.passed);
          if (is_quantized(kv.format)) {
            const HostInputs plain = in.unquantized();
            const Comparison q = compare_to_reference(in.problem, reference_decode(plain.problem, plain.args()),
                                                      in.out.view(), in.lse.view(), quantization_tolerance(in.problem));
            INFO("vs the unquantized values: " << q.summary());
            CHECK(q.passed);
          }
        }
  }
}

// The Hopper kernel plans every KV format (supports() says so without a plan); what it still
// refuses (a page size other than 64) comes with the reason.
TEST_CASE("cuda: the Hopper kernel takes every KV format, and says why not for other page sizes", "[cuda][kv]") {
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  MLA_SKIP_WITHOUT_HOPPER();
  auto hopper = mla::testing::open_cuda_device("hopper");
  Problem p;
  p.num_blocks = 4;
  p.max_blocks_per_seq = 4;
  for (KvFormat f : {KvFormat::fp8_e4m3, KvFormat::fp8_ds_mla, KvFormat::int8}) {
    for (DType dtype : {DType::bf16, DType::fp16}) {
      p.dtype = dtype;
      p.kv_format = f;
      p.page_size = 64;
      const Support s = hopper->supports(p);
      INFO(kv_format_name(f) << " " << dtype_name(dtype) << ": " << s.reason);
      CHECK(s.supported);
      auto plan = hopper->plan(p);
      CHECK(plan->kernel_name() == std::string("cuda_hopper_tma_wgmma_m64_") + kv_format_name(f));
      p.page_size = 16;
      const Support refused = hopper->supports(p);
      CHECK_FALSE(refused.supported);
      CHECK(refused.code == ErrorCode::unsupported);
      CHECK(refused.reason.find("page size 16") != std::string::npos);
      CHECK_THROWS_AS(hopper->plan(p), Error);
    }
  }
}

// The narrow Hopper kernel (keys on the wgmma M dimension) takes the 8-bit caches (fp8_e4m3, int8,
// fp8_ds_mla) with at most 32 query rows (wgmma N = 16 up to 16, else 32), and says why it refuses the rest.
TEST_CASE("cuda: the narrow Hopper kernel takes 8-bit caches with few query rows, and says why not otherwise",
          "[cuda][kv]") {
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  MLA_SKIP_WITHOUT_HOPPER();
  auto narrow = mla::testing::open_cuda_device("hopper_narrow");
  Problem p;
  p.num_blocks = 4;
  p.max_blocks_per_seq = 4;
  for (int64_t h_q : {16, 24, 32})
    for (KvFormat f : {KvFormat::fp8_e4m3, KvFormat::int8, KvFormat::fp8_ds_mla}) {
      p.h_q = h_q;
      p.kv_format = f;
      const Support s = narrow->supports(p);
      INFO(kv_format_name(f) << " h_q " << h_q << ": " << s.reason);
      CHECK(s.supported);
      CHECK(narrow->plan(p)->kernel_name() == std::string("cuda_hopper_narrow_keys_m64_n") + (h_q <= 16 ? "16_" : "32_") +
                                                  kv_format_name(f));
    }
  p.kv_format = KvFormat::bf16;
  Support refused = narrow->supports(p);
  CHECK_FALSE(refused.supported);
  CHECK(refused.reason.find("the cache is bf16") != std::string::npos);
  p.kv_format = KvFormat::int8;
  p.h_q = 11;
  p.s_q = 3;  // 33 rows: one past the N = 32 shape
  refused = narrow->supports(p);
  CHECK_FALSE(refused.supported);
  CHECK(refused.reason.find("s_q x h_q = 33 query rows (the narrow kernel takes at most 32)") != std::string::npos);
  p.h_q = 64;
  p.s_q = 1;
  refused = narrow->supports(p);
  CHECK_FALSE(refused.supported);
  CHECK(refused.reason.find("s_q x h_q = 64 query rows") != std::string::npos);
  CHECK_THROWS_AS(narrow->plan(p), Error);
}
