// The cuda backend on a machine with a GPU: correctness against the float64 reference, CUDA
// errors as mla::Error, config validation. Without a CUDA device every test SKIPs with the
// reason (CI has no GPU); scripts/gpu_check.sh runs the full grid on the lent GPU.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "cuda/cuda_config.hpp"
#include "cuda/cuda_test_support.hpp"
#ifdef MLA_TESTS_HAVE_CUDA
#include "cuda/variants/kernel_variant.hpp"
#endif
#include "mla/compare.hpp"
#include "mla/error.hpp"
#include "mla/inputs.hpp"
#include "mla/reference.hpp"
#include "mla/registry.hpp"

namespace {

nlohmann::json cuda_config(const std::string& kernel = "auto") {
  return nlohmann::json{{"backend", "cuda"}, {"name", "test gpu"}, {"cuda", {{"device_index", 0}, {"kernel", kernel}}}};
}

struct DeviceBuffer {
  mla::Device& dev;
  void* ptr;
  DeviceBuffer(mla::Device& d, size_t bytes) : dev(d), ptr(d.allocate(bytes)) {}
  ~DeviceBuffer() { dev.deallocate(ptr); }
};

mla::Comparison run_case(mla::Device& dev, mla::Problem p, mla::InputSpec spec) {
  mla::HostInputs in = mla::make_random_inputs(p, spec);
  auto plan = dev.plan(in.problem);
  const mla::HostTensor* hosts[] = {&in.q, &in.kv_cache, &in.block_table, &in.cache_seqlens, &in.out, &in.lse};
  std::vector<std::unique_ptr<DeviceBuffer>> bufs;
  std::vector<mla::TensorView> views;
  for (const mla::HostTensor* h : hosts) {
    bufs.push_back(std::make_unique<DeviceBuffer>(dev, h->bytes()));
    dev.copy(bufs.back()->ptr, h->data(), h->bytes(), mla::CopyKind::host_to_device);
    mla::TensorView v = h->view();
    v.data = bufs.back()->ptr;
    v.space = mla::MemorySpace::device;
    views.push_back(v);
  }
  mla::RunArgs a;
  a.q = views[0];
  a.kv_cache = views[1];
  a.block_table = views[2];
  a.cache_seqlens = views[3];
  a.out = views[4];
  a.lse = views[5];
  auto schedule = plan->schedule(a.cache_seqlens);
  plan->run(a, *schedule);
  dev.synchronize();
  mla::HostTensor out(p.dtype, {p.batch, p.s_q, p.h_q, p.d_v()}), lse(mla::DType::fp32, {p.batch, p.h_q, p.s_q});
  dev.copy(out.data(), a.out.data, out.bytes(), mla::CopyKind::device_to_host);
  dev.copy(lse.data(), a.lse.data, lse.bytes(), mla::CopyKind::device_to_host);
  mla::ReferenceOutput ref = mla::reference_decode(in.problem, in.args());
  return mla::compare_to_reference(in.problem, ref, out.view(), lse.view());
}

}  // namespace

TEST_CASE("cuda config section validates without a GPU", "[cuda]") {
  CHECK(mla::validate_config(cuda_config()).empty());
  auto bad = cuda_config();
  bad["cuda"]["kernal"] = "auto";
  auto issues = mla::validate_config(bad);
  REQUIRE_FALSE(issues.empty());
  CHECK(issues[0].to_string().find("/cuda") != std::string::npos);
  bad = cuda_config("fastest");
  CHECK_FALSE(mla::validate_config(bad).empty());
}

#ifdef MLA_TESTS_HAVE_CUDA
// "cuda.kernel" accepts "auto" and exactly the kernel table's config names, in its preference
// order: the config's list (kept for builds without the table) cannot drift from the table.
TEST_CASE("cuda.kernel's choices are auto and the kernel table's names", "[cuda]") {
  std::vector<std::string> table = {"auto"};
  for (const mla::cuda::KernelVariant* v : mla::cuda::kernel_variants()) table.push_back(v->config_name());
  CHECK(table == mla::cuda::kernel_choices());
  for (const std::string& name : table) CHECK(mla::validate_config(cuda_config(name)).empty());
}
#endif

TEST_CASE("cuda open fails with the reason when no device", "[cuda]") {
  const std::string reason = mla::testing::why_no_cuda_device();
  if (reason.empty()) {
    WARN("skipped: a CUDA device is present (this test covers the no-device path)");
    return;
  }
  try {
    mla::open_device(cuda_config());
    FAIL("open_device succeeded without a usable CUDA device");
  } catch (const mla::Error& e) {
    CHECK(e.code() == mla::ErrorCode::backend_unavailable);
    CHECK(std::string(e.what()).find(reason) != std::string::npos);
  }
}

TEST_CASE("cuda kernels (auto and portable) match the float64 reference", "[cuda]") {
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  for (const char* kernel : {"auto", "portable"}) {
  auto dev = mla::open_device(cuda_config(kernel));
  struct C {
    int64_t b, s_q, h_q, h_kv, page;
    bool causal;
    mla::DType dt;
    std::vector<int32_t> lens;
  };
  const C cases[] = {
      {2, 1, 16, 1, 64, false, mla::DType::bf16, {0, 300}},
      {3, 2, 128, 1, 64, true, mla::DType::bf16, {1, 65, 1000}},
      {2, 4, 3, 1, 16, true, mla::DType::fp16, {2, 140}},
      {2, 1, 64, 2, 1, false, mla::DType::bf16, {63, 64}},
  };
  for (const C& c : cases) {
    mla::Problem p;
    p.batch = c.b;
    p.s_q = c.s_q;
    p.h_q = c.h_q;
    p.h_kv = c.h_kv;
    p.page_size = c.page;
    p.causal = c.causal;
    p.dtype = c.dt;
    p.kv_format = *mla::plain_kv_format(c.dt);
    mla::InputSpec spec;
    spec.seqlens = c.lens;
    mla::Comparison cmp = run_case(*dev, p, spec);
    INFO(kernel << ": " << p.describe() << " | " << cmp.summary());
    CHECK(cmp.passed);
  }
  }
}

TEST_CASE("cuda device measures its matmul ceiling", "[cuda]") {
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  auto dev = mla::open_device(cuda_config());
  const std::optional<double> tflops = dev->measure_matmul_tflops();
  REQUIRE(tflops.has_value());  // nullopt only below sm_80, which has no bf16 tensor cores
  INFO("bf16 8192^3 matmul: " << *tflops << " TFLOP/s");
  CHECK(*tflops > 10);     // an sm_80+ GPU does far more than 10 TFLOP/s of bf16
  CHECK(*tflops < 10000);  // and no GPU yet does 10 PFLOP/s dense
}

TEST_CASE("the shipped cuda configs open on this GPU and report its hardware name", "[cuda]") {
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  // Both configs run on whatever GPU is present: the config's name is a label, the hardware
  // name is what the driver says (and what `mla bench --anchors` picks its table by).
  std::string availability;
  for (const auto& b : mla::list_backends())
    if (b.name == "cuda") availability = b.availability.reason;
  for (const char* file : {"h100_sxm.json", "h200_sxm.json"}) {
    const std::string path = std::string(MLA_SOURCE_DIR) + "/configs/" + file;
    INFO(path);
    auto dev = mla::open_device_from_file(path);
    CHECK(dev->name() == mla::read_config_file(path)["name"].get<std::string>());
    const std::string hardware = dev->hardware_name();
    CHECK_FALSE(hardware.empty());
    CHECK_THAT(availability, Catch::Contains(": " + hardware + " (sm_"));  // as `mla backends` shows it
  }
}

TEST_CASE("cuda plan refuses what it cannot run, with a reason", "[cuda]") {
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  auto dev = mla::open_device(cuda_config());
  mla::Problem p;
  p.num_blocks = 4;
  p.max_blocks_per_seq = 4;
  p.dtype = mla::DType::fp32;
  p.kv_format = *mla::plain_kv_format(mla::DType::fp32);
  CHECK_THROWS_AS(dev->plan(p), mla::Error);
  // kernel = hopper refuses what the Hopper kernel cannot run (page size 16 here), with the
  // reason; it takes fp16 as well as bf16 (on an sm_90 GPU; elsewhere it refuses both).
  auto hopper = mla::open_device(cuda_config("hopper"));
  p.dtype = mla::DType::fp16;
  p.kv_format = *mla::plain_kv_format(mla::DType::fp16);
  mla::Problem paged = p;
  paged.page_size = 16;
  paged.num_blocks = 16;
  paged.max_blocks_per_seq = 16;
  try {
    hopper->plan(paged);
    FAIL("kernel=hopper planned a page-16 problem");
  } catch (const mla::Error& e) {
    CHECK(e.code() == mla::ErrorCode::unsupported);
    const std::string what = e.what();  // the first condition that fails: the GPU, or the page
    CHECK((what.find("page size 16") != std::string::npos || what.find("sm_90a only") != std::string::npos));
  }
  if (dev->plan(p)->kernel_name() == "cuda_hopper_tma_wgmma_m64") {  // an sm_90 GPU
    CHECK(hopper->plan(p)->kernel_name() == "cuda_hopper_tma_wgmma_m64");
  }
  // auto says which kernel it chose and why.
  p.dtype = mla::DType::bf16;
  p.kv_format = *mla::plain_kv_format(mla::DType::bf16);
  auto plan = dev->plan(p);
  const std::string why = plan->explain();
  CHECK((why.find("Hopper kernel (sm_90a") != std::string::npos ||
         why.find("not the hopper kernel because") != std::string::npos));
}
