// One device and one plan shared by several threads, one schedule per thread, as a runtime
// serving several streams would use them (backend.hpp: a plan is shared, a schedule is not).
// Results must match the reference and be identical from run to run. Run under
// ThreadSanitizer by scripts/ci-hardening.sh ("[threads]"); cheap enough for the normal suite.
#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <thread>

#include "mla/compare.hpp"
#include "mla/inputs.hpp"
#include "mla/mla.hpp"
#include "mla/reference.hpp"

namespace {

constexpr int kThreads = 4;
constexpr int kRunsPerThread = 3;

// Lengths rotated per thread: the pages needed (and so the plan's problem) stay the same while
// each thread's schedule differs.
mla::InputSpec spec_for(int thread) {
  std::vector<int32_t> lens = {100, 37, 64};
  std::rotate(lens.begin(), lens.begin() + thread % 3, lens.end());
  mla::InputSpec s;
  s.seqlens = lens;
  s.seed = 100 + static_cast<uint64_t>(thread);
  return s;
}

void shared_device_threads(const nlohmann::json& config) {
  auto device = mla::open_device(config);
  mla::Problem p;
  p.batch = 3;
  p.h_q = 16;
  p.page_size = 16;
  std::vector<mla::HostInputs> inputs;
  std::vector<mla::ReferenceOutput> refs;
  for (int t = 0; t < kThreads; ++t) {
    inputs.push_back(mla::make_random_inputs(p, spec_for(t)));
    refs.push_back(mla::reference_decode(inputs.back().problem, inputs.back().args()));
  }
  for (const auto& in : inputs) REQUIRE(in.problem.num_blocks == inputs[0].problem.num_blocks);
  auto plan = device->plan(inputs[0].problem);

  std::atomic<int> passed{0}, identical{0}, errors{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t)
    pool.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      try {
        mla::HostInputs& in = inputs[static_cast<size_t>(t)];
        auto schedule = plan->schedule(in.cache_seqlens.view());
        std::string first;
        for (int r = 0; r < kRunsPerThread; ++r) {
          in.poison_outputs();
          plan->run(in.args(), *schedule);
          device->synchronize();
          const std::string now(static_cast<const char*>(in.out.data()), in.out.bytes());
          if (r == 0) {
            first = now;
            auto c = mla::compare_to_reference(in.problem, refs[static_cast<size_t>(t)], in.out.view(), in.lse.view());
            passed += c.passed;
          } else {
            identical += now == first;
          }
        }
      } catch (const std::exception&) {
        ++errors;
      }
    });
  // Meanwhile the main thread plans other shapes on the same device and reads the registry.
  go = true;
  for (int k = 0; k < 4; ++k) {
    mla::Problem other = inputs[0].problem;
    other.h_q = 8 * (k + 1);
    CHECK_NOTHROW(device->plan(other));
    CHECK(!mla::list_backends().empty());
  }
  for (auto& th : pool) th.join();
  CHECK(errors == 0);
  CHECK(passed == kThreads);
  CHECK(identical == kThreads * (kRunsPerThread - 1));
}

}  // namespace

TEST_CASE("threads: one cpu device and plan shared, one schedule per thread", "[threads]") {
  shared_device_threads(mla::default_config());
}

TEST_CASE("threads: one sim_tpu device and plan shared, one schedule per thread", "[threads]") {
  const std::string path = std::string(MLA_SOURCE_DIR) + "/configs/sc11_fp300.json";
  REQUIRE(std::filesystem::exists(path));
  shared_device_threads(mla::read_config_file(path));
}

TEST_CASE("threads: devices opened concurrently from one config", "[threads]") {
  std::atomic<int> opened{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t)
    pool.emplace_back([&] {
      for (int k = 0; k < 5; ++k) {
        auto d = mla::open_device(mla::default_config());
        opened += d != nullptr;
      }
    });
  for (auto& th : pool) th.join();
  CHECK(opened == kThreads * 5);
}
