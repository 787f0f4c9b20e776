// The thread-safety contract of docs/embedding.md, exercised on the cpu backend: one device
// and one plan shared by several threads, one schedule per thread, decodes running at the
// same time, every result checked against the float64 reference.
#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "c_api/c_api_support.hpp"
#include "mla/compare.hpp"
#include "mla/inputs.hpp"
#include "mla/mla.hpp"
#include "mla/reference.hpp"

using namespace mla::testing;

namespace {

constexpr int kThreads = 4;
constexpr int kRunsPerThread = 4;

// Each thread decodes its own batch. The lengths are a rotation of one set, so every thread
// has the same problem shape (one plan fits all) but different per-sequence lengths (so a
// schedule or workspace leaking between threads would give wrong numbers).
mla::HostInputs thread_inputs(int thread) {
  const std::vector<int32_t> lengths = {300, 1, 140, 65};
  mla::Problem problem;
  problem.batch = static_cast<int64_t>(lengths.size());
  problem.h_q = 32;
  mla::InputSpec spec;
  spec.seqlens = lengths;
  std::rotate(spec.seqlens.begin(), spec.seqlens.begin() + thread % 4, spec.seqlens.end());
  spec.seed = 1000 + static_cast<uint64_t>(thread);
  return mla::make_random_inputs(problem, spec);
}

// What one thread reports: one line per failed check, empty when all passed.
struct ThreadReport {
  std::vector<std::string> failures;
  int runs_checked = 0;
};

// Starts every thread's decode loop at once (a spin barrier, so the runs really overlap) and
// waits for all. `decode(thread, inputs)` runs one decode; it is called kRunsPerThread times.
std::vector<ThreadReport> run_threads(std::vector<mla::HostInputs>& inputs,
                                      const std::function<std::string(int, mla::HostInputs&)>& decode) {
  std::vector<ThreadReport> reports(kThreads);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      mla::HostInputs& in = inputs[static_cast<size_t>(t)];
      const mla::ReferenceOutput reference = mla::reference_decode(in.problem, in.args());
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      for (int r = 0; r < kRunsPerThread; ++r) {
        in.poison_outputs();  // a run that writes nothing must not pass on the previous result
        std::string error = decode(t, in);
        if (!error.empty()) {
          reports[static_cast<size_t>(t)].failures.push_back(error);
          continue;
        }
        mla::Comparison c = mla::compare_to_reference(in.problem, reference, in.out.view(), in.lse.view());
        if (!c.passed)
          reports[static_cast<size_t>(t)].failures.push_back("thread " + std::to_string(t) + " run " +
                                                            std::to_string(r) + ": " + c.summary());
        ++reports[static_cast<size_t>(t)].runs_checked;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  return reports;
}

void require_all_passed(const std::vector<ThreadReport>& reports) {
  for (const ThreadReport& report : reports) {
    for (const std::string& failure : report.failures) FAIL_CHECK(failure);
    CHECK(report.runs_checked == kRunsPerThread);
  }
}

std::vector<mla::HostInputs> all_thread_inputs() {
  std::vector<mla::HostInputs> inputs;
  for (int t = 0; t < kThreads; ++t) inputs.push_back(thread_inputs(t));
  for (const auto& in : inputs) {
    REQUIRE(in.problem.num_blocks == inputs[0].problem.num_blocks);
    REQUIRE(in.problem.max_blocks_per_seq == inputs[0].problem.max_blocks_per_seq);
  }
  return inputs;
}

}  // namespace

TEST_CASE("embedding: threads share a device and a plan, each with its own schedule (C++ API)", "[c_api][threads]") {
  std::vector<mla::HostInputs> inputs = all_thread_inputs();
  const std::unique_ptr<mla::Device> device = mla::open_device(mla::default_config());
  const std::unique_ptr<mla::Plan> plan = device->plan(inputs[0].problem);

  // Each thread makes its schedule inside the loop's first iteration and keeps it: schedule
  // creation runs concurrently too.
  std::vector<std::unique_ptr<mla::Schedule>> schedules(kThreads);
  auto reports = run_threads(inputs, [&](int t, mla::HostInputs& in) -> std::string {
    try {
      auto& schedule = schedules[static_cast<size_t>(t)];
      if (!schedule) schedule = plan->schedule(in.cache_seqlens.view());
      plan->run(in.args(), *schedule);
      return "";
    } catch (const std::exception& e) {
      return "thread " + std::to_string(t) + ": " + e.what();
    }
  });
  require_all_passed(reports);
}

TEST_CASE("embedding: threads share a device and a plan, each with its own schedule (C ABI)", "[c_api][threads]") {
  std::vector<mla::HostInputs> inputs = all_thread_inputs();
  DeviceHandle device(open_cpu_device_c());
  mla_problem problem = to_c(inputs[0].problem);
  PlanHandle plan = create_plan(device.get(), problem);

  std::vector<ScheduleHandle> schedules(kThreads);
  auto reports = run_threads(inputs, [&](int t, mla::HostInputs& in) -> std::string {
    auto& schedule = schedules[static_cast<size_t>(t)];
    if (!schedule) {
      mla_schedule_create_args args{};
      args.struct_size = sizeof args;
      args.plan = plan.get();
      args.cache_seqlens = to_c(in.cache_seqlens.view());
      Status status(mla_schedule_create(&args));
      if (status) return describe(status);
      schedule.reset(args.schedule);
    }
    const mla_tensors tensors = to_c(in.args());
    mla_run_args args{};
    args.struct_size = sizeof args;
    args.plan = plan.get();
    args.schedule = schedule.get();
    args.tensors = &tensors;
    Status status(mla_run(&args));
    return status ? "thread " + std::to_string(t) + ": " + describe(status) : "";
  });
  require_all_passed(reports);
}
