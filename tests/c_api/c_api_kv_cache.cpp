// The C ABI of quantized caches: mla_device_supports (a yes and a refusal, as answers, not
// errors), mla_write_kv against the format traits byte for byte, and a caller built against the
// 0.1 header (mla_problem and mla_tensors without kv_format / kv_scale) that still runs.
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "c_api/c_api_support.hpp"
#include "mla/host_device.hpp"
#include "mla/host_tensor.hpp"
#include "mla/inputs.hpp"
#include "mla/kv_format.hpp"
#include "mla/registry.hpp"

using namespace mla::testing;

namespace {

// A host backend that refuses every problem: the only way to get an "unsupported" answer that
// does not change when a real backend learns a new format.
class RefusingDevice final : public mla::HostDevice {
 public:
  [[nodiscard]] std::string backend_name() const override { return "test_refusing"; }
  [[nodiscard]] std::string name() const override { return "refuses everything"; }

 protected:
  [[nodiscard]] std::optional<std::string> do_unsupported_reason(const mla::Problem& p) const override {
    return std::string("test_refusing: no kernel for the ") + mla::kv_format_name(p.kv_format) + " KV format";
  }
  std::unique_ptr<mla::Plan> do_plan(const mla::Problem&) const override {
    mla::fail(mla::ErrorCode::internal, "do_plan of a refused problem");
  }
};

void register_refusing_backend() {
  static const bool once = [] {
    mla::BackendFactory f;
    f.name = "test_refusing";
    f.description = "test backend that refuses every problem";
    f.availability = [] { return mla::Availability{true, "test"}; };
    f.parse_config = [](mla::ConfigReader&) { return std::any(); };
    f.open = [](const std::any&, const std::string&) { return std::make_unique<RefusingDevice>(); };
    mla::register_backend(f);
    return true;
  }();
  (void)once;
}

mla_problem small_c_problem(int32_t kv_format) {
  mla_problem p;
  mla_problem_init(&p);
  p.h_q = 16;
  p.num_blocks = 4;
  p.max_blocks_per_seq = 4;
  p.kv_format = kv_format;
  return p;
}

}  // namespace

TEST_CASE("c_api: mla_device_supports answers yes or no with the code and reason plan creation would give", "[c_api][kv]") {
  DeviceHandle cpu(open_cpu_device_c());
  char reason[256] = "untouched";
  SECTION("supported") {
    const mla_supports_args a = ask_supports(cpu.get(), small_c_problem(MLA_KV_FORMAT_BF16), reason, sizeof reason);
    CHECK(a.supported == 1);
    CHECK(a.code == MLA_OK);
    CHECK(a.reason_size == 0);
    CHECK(std::string(reason).empty());
  }
  SECTION("an invalid problem is an answer, not an error") {
    mla_problem p = small_c_problem(MLA_KV_FORMAT_BF16);
    p.h_kv = 3;
    const mla_supports_args a = ask_supports(cpu.get(), p, reason, sizeof reason);
    CHECK(a.supported == 0);
    CHECK(a.code == MLA_ERROR_INVALID_ARGUMENT);
    CHECK_THAT(std::string(reason), Catch::Contains("problem.h_q"));
    CHECK(a.reason_size == std::strlen(reason));
  }
  SECTION("refused by the backend: MLA_ERROR_UNSUPPORTED with its reason, truncated to the buffer") {
    register_refusing_backend();
    DeviceHandle refusing(open_cpu_device_c(R"({"backend": "test_refusing", "name": "x"})"));
    const mla_problem p = small_c_problem(MLA_KV_FORMAT_INT8);
    const mla_supports_args a = ask_supports(refusing.get(), p, reason, sizeof reason);
    CHECK(a.supported == 0);
    CHECK(a.code == MLA_ERROR_UNSUPPORTED);
    const std::string full = "test_refusing: no kernel for the int8 KV format";
    CHECK(std::string(reason) == full);
    char small[8] = {};
    const mla_supports_args b = ask_supports(refusing.get(), p, small, sizeof small);
    CHECK(b.reason_size == full.size());
    CHECK(std::string(small) == full.substr(0, 7));
    // And plan creation says the same thing as an error.
    mla_plan_create_args create{};
    create.struct_size = sizeof create;
    create.device = refusing.get();
    create.problem = &p;
    Status status(mla_plan_create(&create));
    CHECK(mla_status_get_code(status.get()) == MLA_ERROR_UNSUPPORTED);
    CHECK_THAT(std::string(mla_status_message(status.get())), Catch::Contains(full));
  }
  SECTION("bad arguments are errors") {
    mla_supports_args a{};
    a.struct_size = sizeof a;
    const mla_problem p = small_c_problem(MLA_KV_FORMAT_BF16);
    a.problem = &p;
    CHECK(mla_status_get_code(Status(mla_device_supports(&a)).get()) == MLA_ERROR_INVALID_ARGUMENT);
  }
}

namespace {

constexpr int64_t kDc = 512, kDr = 64, kDqk = kDc + kDr, kBlocks = 3, kPage = 4;
constexpr unsigned char kPoison = 0xA5;

// T tokens of fp32 values: random, with a few large ones (saturation) and specials.
struct Tokens {
  int64_t count;
  std::vector<float> kv_c, k_pe;
};
Tokens make_tokens(int64_t count, uint64_t seed) {
  Tokens t{count, std::vector<float>(static_cast<size_t>(count * kDc)), std::vector<float>(static_cast<size_t>(count * kDr))};
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& v : t.kv_c) v = normal(rng);
  for (float& v : t.k_pe) v = normal(rng);
  t.kv_c[3] = 1e6f;  // past every format's range: saturates
  t.kv_c[5] = -1e6f;
  t.kv_c[static_cast<size_t>(kDc + 7)] = std::numeric_limits<float>::infinity();
  t.k_pe[2] = std::nanf("");
  return t;
}

struct Cache {
  mla::KvFormat format;
  mla::HostTensor kv_cache, kv_scale;
  int64_t token_bytes;
  explicit Cache(mla::KvFormat f) : format(f) {
    const mla::KvFormatTraits& t = mla::kv_format_traits(f);
    kv_cache = mla::HostTensor(t.element, {kBlocks, kPage, 1, t.token_elements(kDc, kDr)});
    std::memset(kv_cache.data(), kPoison, kv_cache.bytes());
    token_bytes = mla::kv_token_bytes(f, kDc, kDr);
    const std::vector<int64_t> shape = mla::kv_scale_shape(f, kDc, kDr);
    if (!shape.empty()) {
      kv_scale = mla::HostTensor(mla::DType::fp32, shape);
      for (int64_t c = 0; c < shape[0]; ++c) kv_scale.as<float>()[c] = 0.01f + 0.001f * static_cast<float>(c % 17);
    }
  }
  [[nodiscard]] const unsigned char* slot(int64_t s) const {
    return static_cast<const unsigned char*>(kv_cache.data()) + s * token_bytes;
  }
};

Status write(mla_device* device, Cache& cache, Tokens& tokens, std::vector<int64_t>& slots) {
  const int64_t n = tokens.count;
  mla_write_kv_args a{};
  a.struct_size = sizeof a;
  a.device = device;
  a.kv_format = static_cast<int32_t>(cache.format);
  a.kv_c = to_c(mla::TensorView::contiguous(tokens.kv_c.data(), mla::DType::fp32, {n, kDc}));
  a.k_pe = to_c(mla::TensorView::contiguous(tokens.k_pe.data(), mla::DType::fp32, {n, kDr}));
  a.slot_mapping = to_c(mla::TensorView::contiguous(slots.data(), mla::DType::int64, {n}));
  a.kv_cache = to_c(cache.kv_cache.view());
  if (cache.kv_scale.defined()) a.kv_scale = to_c(cache.kv_scale.view());
  return Status(mla_write_kv(&a));
}

}  // namespace

TEST_CASE("c_api: mla_write_kv writes exactly what the format's quantize gives and nothing else", "[c_api][kv]") {
  DeviceHandle device(open_cpu_device_c());
  for (const mla::KvFormatTraits& traits : mla::kv_formats()) {
    INFO("format " << traits.name);
    Cache cache(traits.format);
    Tokens tokens = make_tokens(6, 17 + static_cast<uint64_t>(traits.format));
    // Two skips; slots spread over the blocks, the last slot of the cache included.
    std::vector<int64_t> slots = {5, -1, 0, kBlocks * kPage - 1, -7, 6};
    Status status = write(device.get(), cache, tokens, slots);
    INFO(describe(status));
    REQUIRE(!status);

    std::vector<unsigned char> expected(static_cast<size_t>(cache.token_bytes));
    std::vector<float> values(kDqk);
    std::vector<char> written(kBlocks * kPage, 0);
    const float* scale = cache.kv_scale.defined() ? cache.kv_scale.as<const float>() : nullptr;
    for (int64_t t = 0; t < tokens.count; ++t) {
      if (slots[static_cast<size_t>(t)] < 0) continue;
      std::copy_n(&tokens.kv_c[static_cast<size_t>(t * kDc)], kDc, values.begin());
      std::copy_n(&tokens.k_pe[static_cast<size_t>(t * kDr)], kDr, values.begin() + kDc);
      traits.quantize(values.data(), scale, kDc, kDr, expected.data());
      const int64_t s = slots[static_cast<size_t>(t)];
      written[static_cast<size_t>(s)] = 1;
      INFO("token " << t << " slot " << s);
      CHECK(std::memcmp(cache.slot(s), expected.data(), expected.size()) == 0);
    }
    // Skipped tokens wrote nothing: every other slot still holds the poison.
    for (int64_t s = 0; s < kBlocks * kPage; ++s) {
      if (written[static_cast<size_t>(s)]) continue;
      bool untouched = true;
      for (int64_t k = 0; k < cache.token_bytes; ++k) untouched &= cache.slot(s)[k] == kPoison;
      INFO("slot " << s);
      CHECK(untouched);
    }
  }
}

TEST_CASE("c_api: mla_write_kv rejects an out-of-range slot before writing anything", "[c_api][kv]") {
  DeviceHandle device(open_cpu_device_c());
  for (mla::KvFormat f : {mla::KvFormat::bf16, mla::KvFormat::fp8_e4m3, mla::KvFormat::fp8_ds_mla, mla::KvFormat::int8}) {
    INFO("format " << mla::kv_format_name(f));
    Cache cache(f);
    Tokens tokens = make_tokens(3, 5);
    std::vector<int64_t> slots = {0, 1, kBlocks * kPage};  // the first two are valid, the third is not
    Status status = write(device.get(), cache, tokens, slots);
    CHECK(mla_status_get_code(status.get()) == MLA_ERROR_INVALID_ARGUMENT);
    CHECK_THAT(std::string(mla_status_message(status.get())), Catch::Contains("write_kv.slot_mapping[2]"));
    bool untouched = true;
    for (size_t k = 0; k < cache.kv_cache.bytes(); ++k) untouched &= static_cast<const unsigned char*>(cache.kv_cache.data())[k] == kPoison;
    CHECK(untouched);
  }
}

TEST_CASE("c_api: a caller built against the 0.1 header (no kv_format and no kv_scale) still runs", "[c_api][kv]") {
  DeviceHandle device(open_cpu_device_c());
  mla::Problem problem;
  problem.h_q = 16;
  mla::InputSpec spec;
  spec.seqlens = {70, 3};
  problem.batch = 2;
  mla::HostInputs in = mla::make_random_inputs(problem, spec);

  // The 0.1 structs ended before the 0.2 fields; struct_size says so, and garbage after it
  // (what an old caller's stack may hold) must not be read.
  mla_problem p = to_c(in.problem);
  p.struct_size = offsetof(mla_problem, kv_format);
  p.kv_format = 77;
  p.kv_dtype = MLA_DTYPE_BF16;
  mla_tensors t = to_c(in.args());
  t.struct_size = offsetof(mla_tensors, kv_scale);
  t.kv_scale.dtype = 99;
  t.kv_scale.rank = 3;

  PlanHandle plan = create_plan(device.get(), p);
  ScheduleHandle schedule = create_schedule(plan.get(), to_c(in.cache_seqlens.view()));
  mla_run_args run{};
  run.struct_size = sizeof run;
  run.plan = plan.get();
  run.schedule = schedule.get();
  run.tensors = &t;
  Status status(mla_run(&run));
  INFO(describe(status));
  REQUIRE(!status);
  CHECK(reference_check(plan.get(), t).passed == 1);
}

TEST_CASE("c_api: mla_merge_context_parallel needs the backend's native communicator", "[c_api][context_parallel]") {
  // Host backends have none (the C++ API takes any mla::Communicator): a clear refusal, and the
  // outputs untouched. A missing communicator or plan is the caller's error.
  DeviceHandle device(open_cpu_device_c());
  mla_problem problem;
  mla_problem_init(&problem);
  problem.batch = 2;
  problem.h_q = 16;
  problem.num_blocks = 4;
  problem.max_blocks_per_seq = 2;
  problem.dtype = MLA_DTYPE_FP32;  // out and lse below are float
  problem.kv_dtype = MLA_DTYPE_FP32;
  PlanHandle plan = create_plan(device.get(), problem);

  std::vector<float> out(2 * 16 * 512, 0.5f), lse(2 * 16, 1.5f);
  const int64_t out_shape[4] = {2, 1, 16, 512}, lse_shape[3] = {2, 16, 1};
  mla_context_merge_args args{};
  args.struct_size = sizeof args;
  args.plan = plan.get();
  args.out = mla_tensor_contiguous(out.data(), MLA_DTYPE_FP32, 4, out_shape, MLA_MEMORY_HOST);
  args.lse = mla_tensor_contiguous(lse.data(), MLA_DTYPE_FP32, 3, lse_shape, MLA_MEMORY_HOST);

  Status missing(mla_merge_context_parallel(&args));
  CHECK(mla_status_get_code(missing.get()) == MLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(mla_status_message(missing.get())), Catch::Contains("communicator"));

  int not_a_communicator = 0;
  args.communicator = &not_a_communicator;
  Status refused(mla_merge_context_parallel(&args));
  CHECK(mla_status_get_code(refused.get()) == MLA_ERROR_UNSUPPORTED);
  CHECK_THAT(std::string(mla_status_message(refused.get())), Catch::Contains("no native communicator"));
  CHECK(std::string(mla_status_backend(refused.get())) == "cpu");
  CHECK(out[0] == 0.5f);
  CHECK(lse[0] == 1.5f);

  args.plan = nullptr;
  CHECK(mla_status_get_code(Status(mla_merge_context_parallel(&args)).get()) == MLA_ERROR_INVALID_ARGUMENT);
}
