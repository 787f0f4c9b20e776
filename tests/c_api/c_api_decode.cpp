// Plan, schedule, run and the reference check through the C ABI, on the cpu backend.
#include <cmath>
#include <string>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstring>

#include "c_api/c_api_support.hpp"
#include "mla/compare.hpp"
#include "mla/inputs.hpp"
#include "mla/reference.hpp"

using namespace mla::testing;

namespace {

mla::Problem small_problem(mla::Variant variant) {
  mla::Problem p;
  p.variant = variant;
  p.batch = 3;
  p.s_q = 2;
  p.h_q = 16;
  p.causal = true;
  return p;
}

mla::HostInputs make_inputs(mla::Variant variant, uint64_t seed) {
  mla::InputSpec spec;
  spec.seqlens = {140, 2, 65};
  spec.seed = seed;
  return mla::make_random_inputs(small_problem(variant), spec);
}

PlanHandle make_plan(mla_device* device, const mla::Problem& problem) { return create_plan(device, to_c(problem)); }

ScheduleHandle make_schedule(const mla_plan* plan, const mla::HostInputs& inputs) {
  return create_schedule(plan, to_c(inputs.cache_seqlens.view()));
}

Status run(const mla_plan* plan, const mla_schedule* schedule, const mla_tensors& tensors) {
  mla_run_args args{};
  args.struct_size = sizeof args;
  args.plan = plan;
  args.schedule = schedule;
  args.tensors = &tensors;
  args.validate_indices = 1;
  return Status(mla_run(&args));
}

}  // namespace

TEST_CASE("c_api: a decode through the C ABI matches the float64 reference", "[c_api]") {
  const mla::Variant variant = GENERATE(mla::Variant::latent, mla::Variant::absorb);
  DeviceHandle device(open_cpu_device_c());
  mla::HostInputs inputs = make_inputs(variant, 7);
  PlanHandle plan = make_plan(device.get(), inputs.problem);
  CHECK(std::string(mla_plan_backend(plan.get())) == "cpu");
  CHECK(!std::string(mla_plan_kernel_name(plan.get())).empty());
  CHECK(!std::string(mla_plan_explain(plan.get())).empty());
  CHECK(mla_plan_workspace_bytes(plan.get()) > 0);

  ScheduleHandle schedule = make_schedule(plan.get(), inputs);
  CHECK(!std::string(mla_schedule_describe(schedule.get())).empty());
  const mla_tensors tensors = to_c(inputs.args());
  Status status = run(plan.get(), schedule.get(), tensors);
  INFO(describe(status));
  REQUIRE(!status);

  // The C check and the C++ comparison agree, and both pass.
  const mla_reference_check_args result = reference_check(plan.get(), tensors);
  mla::Comparison cpp = mla::compare_to_reference(inputs.problem, mla::reference_decode(inputs.problem, inputs.args()),
                                                  inputs.out.view(), inputs.lse.view());
  INFO(cpp.summary());
  CHECK(result.passed == 1);
  CHECK(cpp.passed);
  CHECK(result.rel_l2_error == Approx(cpp.rel_l2_error));
  CHECK(result.nonfinite_mismatches == 0);

  // The summary goes into a caller buffer, truncated to fit.
  char summary[256] = {};
  mla_reference_check_args with_summary{};
  with_summary.struct_size = sizeof with_summary;
  with_summary.plan = plan.get();
  with_summary.tensors = &tensors;
  with_summary.summary = summary;
  with_summary.summary_capacity = 8;
  REQUIRE(!Status(mla_reference_check(&with_summary)));
  CHECK(std::string(summary).size() == 7);

  // A wrong output element must make the check fail: the check is able to fail.
  inputs.out.set(5, inputs.out.get(5) + 4.0);
  CHECK(reference_check(plan.get(), tensors).passed == 0);
  inputs.out.set(5, std::nan(""));
  CHECK(reference_check(plan.get(), tensors).nonfinite_mismatches > 0);
}

TEST_CASE("c_api: bad run arguments come back as statuses naming the problem", "[c_api]") {
  DeviceHandle device(open_cpu_device_c());
  mla::HostInputs inputs = make_inputs(mla::Variant::latent, 3);
  PlanHandle plan = make_plan(device.get(), inputs.problem);
  ScheduleHandle schedule = make_schedule(plan.get(), inputs);
  mla_tensors tensors = to_c(inputs.args());

  auto expect_invalid = [&](const Status& status, const std::string& mentions) {
    INFO(describe(status));
    CHECK(mla_status_get_code(status.get()) == MLA_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(mla_status_message(status.get())).find(mentions) != std::string::npos);
  };

  SECTION("wrong shape") {
    tensors.q.shape[2] = 8;
    expect_invalid(run(plan.get(), schedule.get(), tensors), "q");
    // The backend the call was addressed to is named.
    CHECK(std::string(mla_status_backend(run(plan.get(), schedule.get(), tensors).get())) == "cpu");
  }
  SECTION("unknown dtype value") {
    tensors.kv_cache.dtype = 42;
    expect_invalid(run(plan.get(), schedule.get(), tensors), "kv_cache.dtype");
  }
  SECTION("rank past MLA_MAX_RANK") {
    tensors.out.rank = 9;
    expect_invalid(run(plan.get(), schedule.get(), tensors), "out.rank");
  }
  SECTION("a schedule of another plan") {
    PlanHandle other = make_plan(device.get(), inputs.problem);
    ScheduleHandle foreign = make_schedule(other.get(), inputs);
    expect_invalid(run(plan.get(), foreign.get(), tensors), "another plan");
  }
  SECTION("a schedule made for other lengths") {
    inputs.cache_seqlens.as<int32_t>()[1] = 3;
    expect_invalid(run(plan.get(), schedule.get(), tensors), "schedule");
  }
  SECTION("an out-of-range block id is caught by validate_indices") {
    inputs.block_table.as<int32_t>()[0] = 1 << 30;
    expect_invalid(run(plan.get(), schedule.get(), tensors), "block");
  }
  SECTION("missing pieces") {
    expect_invalid(run(plan.get(), nullptr, tensors), "schedule");
    mla_run_args args{};
    args.struct_size = sizeof args;
    args.plan = plan.get();
    args.schedule = schedule.get();
    expect_invalid(Status(mla_run(&args)), "mla_tensors");
    tensors.struct_size = 8;
    expect_invalid(run(plan.get(), schedule.get(), tensors), "struct_size");
  }
}

TEST_CASE("c_api: plan creation refuses what the backend cannot run, with the reason", "[c_api]") {
  DeviceHandle device(open_cpu_device_c());
  mla_problem problem;
  mla_problem_init(&problem);
  problem.num_blocks = 4;
  problem.max_blocks_per_seq = 4;
  mla_plan_create_args args{};
  args.struct_size = sizeof args;
  args.device = device.get();
  args.problem = &problem;

  SECTION("heads not divisible by KV heads") {
    problem.h_kv = 3;
    Status status(mla_plan_create(&args));
    CHECK(mla_status_get_code(status.get()) == MLA_ERROR_INVALID_ARGUMENT);
    CHECK(args.plan == nullptr);
  }
  SECTION("the 0.1 way of asking for a quantized cache is refused with the new field's name") {
    problem.kv_format = MLA_KV_FORMAT_FROM_DTYPE;
    problem.kv_dtype = MLA_DTYPE_FP8_E4M3;
    problem.kv_scaling = MLA_KV_SCALING_PER_TILE;
    problem.kv_scale_tile = 64;
    Status status(mla_plan_create(&args));
    INFO(describe(status));
    CHECK(mla_status_get_code(status.get()) == MLA_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(mla_status_message(status.get())).find("problem.kv_format") != std::string::npos);
    CHECK(args.plan == nullptr);
  }
  SECTION("the problem comes back as it was planned") {
    problem.batch = 5;
    problem.causal = 1;
    REQUIRE(!Status(mla_plan_create(&args)));
    PlanHandle plan(args.plan);
    mla_problem back{};
    back.struct_size = sizeof back;
    REQUIRE(!Status(mla_plan_get_problem(plan.get(), &back)));
    CHECK(back.batch == 5);
    CHECK(back.causal == 1);
    CHECK(back.h_q == 128);
    CHECK(back.d_c == 512);
    CHECK(back.kv_format == MLA_KV_FORMAT_BF16);
    CHECK(back.kv_dtype == MLA_DTYPE_BF16);
    CHECK(back.struct_size == sizeof back);
  }
}

TEST_CASE("c_api: handles may be freed in any order", "[c_api]") {
  mla_device* device = open_cpu_device_c();
  mla::HostInputs inputs = make_inputs(mla::Variant::latent, 11);
  PlanHandle plan = make_plan(device, inputs.problem);
  ScheduleHandle schedule = make_schedule(plan.get(), inputs);
  // The plan keeps the device alive, the schedule keeps the plan alive.
  mla_device_free(device);
  const mla_tensors tensors = to_c(inputs.args());
  REQUIRE(!run(plan.get(), schedule.get(), tensors));
  CHECK(reference_check(plan.get(), tensors).passed == 1);
  plan.reset();
  CHECK(!std::string(mla_schedule_describe(schedule.get())).empty());
}

TEST_CASE("c_api: a program built against the 0.1 header keeps working", "[c_api]") {
  // The 0.1 mla_problem ends at kv_scale_tile; such a program calls the mla_problem_init
  // symbol (not the header's macro) on a buffer of that size and passes that struct_size.
  constexpr size_t v1_size = offsetof(mla_problem, kv_scale_tile) + sizeof(int32_t);
  alignas(mla_problem) unsigned char buffer[sizeof(mla_problem) + 16];
  std::memset(buffer, 0xab, sizeof buffer);
  auto* problem = reinterpret_cast<mla_problem*>(buffer);
  (mla_problem_init)(problem);  // the exported 0.1 entry point
  for (size_t i = v1_size; i < sizeof buffer; ++i) CHECK(buffer[i] == 0xab);  // nothing past the 0.1 struct
  CHECK(problem->struct_size == v1_size);
  CHECK(problem->h_q == 128);
  CHECK(problem->kv_dtype == MLA_DTYPE_BF16);

  // It plans with the 0.1 fields (the junk past them is never read) and gets the bf16 cache.
  DeviceHandle device(open_cpu_device_c());
  problem->num_blocks = 4;
  problem->max_blocks_per_seq = 4;
  mla_plan_create_args args{};
  args.struct_size = sizeof args;
  args.device = device.get();
  args.problem = problem;
  Status status(mla_plan_create(&args));
  INFO(describe(status));
  REQUIRE(status == nullptr);
  PlanHandle plan(args.plan);
  mla_problem back;
  mla_problem_init(&back);
  REQUIRE(!Status(mla_plan_get_problem(plan.get(), &back)));
  CHECK(back.kv_format == MLA_KV_FORMAT_BF16);

  // The header's macro initialises the whole current struct.
  mla_problem current;
  std::memset(&current, 0xab, sizeof current);
  mla_problem_init(&current);
  CHECK(current.struct_size == sizeof(mla_problem));
  CHECK(current.kv_format == MLA_KV_FORMAT_FROM_DTYPE);
}
