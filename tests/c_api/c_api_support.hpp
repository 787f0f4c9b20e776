// Helpers for the tests of the C ABI: C++ host tensors as mla_tensor structs, and statuses
// that free themselves.
#pragma once

#include <memory>
#include <string>

#include <catch2/catch.hpp>

#include "mla/mla.h"
#include "mla/problem.hpp"

namespace mla::testing {

struct StatusDeleter {
  void operator()(mla_status* status) const { mla_status_free(status); }
};
using Status = std::unique_ptr<mla_status, StatusDeleter>;

// "ok", or "<code>: <message> [backend]" for a failed call: readable in a failed REQUIRE.
inline std::string describe(const Status& status) {
  if (!status) return "ok";
  return std::string(mla_status_code_name(mla_status_get_code(status.get()))) + ": " +
         mla_status_message(status.get()) + " [" + mla_status_backend(status.get()) + "]";
}

inline mla_tensor to_c(const TensorView& view) {
  mla_tensor t{};
  t.data = view.data;
  t.dtype = static_cast<int32_t>(view.dtype);
  t.rank = view.rank;
  t.space = static_cast<int32_t>(view.space);
  for (int d = 0; d < MLA_MAX_RANK; ++d) {
    t.shape[d] = view.shape[static_cast<size_t>(d)];
    t.strides[d] = view.strides[static_cast<size_t>(d)];
  }
  return t;
}

inline mla_tensors to_c(const RunArgs& args) {
  mla_tensors t{};
  t.struct_size = sizeof t;
  t.q = to_c(args.q);
  t.q_nope = to_c(args.q_nope);
  t.q_rope = to_c(args.q_rope);
  t.w_uk = to_c(args.w_uk);
  t.w_uv = to_c(args.w_uv);
  t.kv_cache = to_c(args.kv_cache);
  t.kv_scale = to_c(args.kv_scale);
  t.block_table = to_c(args.block_table);
  t.cache_seqlens = to_c(args.cache_seqlens);
  t.out = to_c(args.out);
  t.lse = to_c(args.lse);
  return t;
}

inline mla_problem to_c(const Problem& p) {
  mla_problem c;
  mla_problem_init(&c);
  c.variant = static_cast<int32_t>(p.variant);
  c.batch = p.batch;
  c.s_q = p.s_q;
  c.h_q = p.h_q;
  c.h_kv = p.h_kv;
  c.d_c = p.d_c;
  c.d_r = p.d_r;
  c.d_nope = p.d_nope;
  c.d_vh = p.d_vh;
  c.page_size = p.page_size;
  c.num_blocks = p.num_blocks;
  c.max_blocks_per_seq = p.max_blocks_per_seq;
  c.causal = p.causal ? 1 : 0;
  c.softmax_scale = p.softmax_scale;
  c.dtype = static_cast<int32_t>(p.dtype);
  c.kv_dtype = static_cast<int32_t>(p.kv().element);
  c.kv_format = static_cast<int32_t>(p.kv_format);
  return c;
}

// A cpu device opened through the C ABI from JSON text; fails the test when it cannot open.
inline mla_device* open_cpu_device_c(const char* json = R"({"backend": "cpu", "name": "test cpu"})") {
  mla_device_open_args args{};
  args.struct_size = sizeof args;
  args.config_json = json;
  Status status(mla_device_open(&args));
  INFO(describe(status));
  REQUIRE(!status);
  REQUIRE(args.device != nullptr);
  return args.device;
}

// Frees a handle at the end of a scope.
template <typename T, void (*Free)(T*)>
struct Freer {
  void operator()(T* handle) const { Free(handle); }
};
using DeviceHandle = std::unique_ptr<mla_device, Freer<mla_device, mla_device_free>>;
using PlanHandle = std::unique_ptr<mla_plan, Freer<mla_plan, mla_plan_free>>;
using ScheduleHandle = std::unique_ptr<mla_schedule, Freer<mla_schedule, mla_schedule_free>>;

// mla_plan_create that must succeed (the status is shown when it does not).
inline PlanHandle create_plan(mla_device* device, const mla_problem& problem) {
  mla_plan_create_args args{};
  args.struct_size = sizeof args;
  args.device = device;
  args.problem = &problem;
  Status status(mla_plan_create(&args));
  INFO(describe(status));
  REQUIRE(!status);
  return PlanHandle(args.plan);
}

// mla_schedule_create that must succeed, ordered on `stream` (null: the backend's default).
inline ScheduleHandle create_schedule(const mla_plan* plan, const mla_tensor& cache_seqlens, void* stream = nullptr) {
  mla_schedule_create_args args{};
  args.struct_size = sizeof args;
  args.plan = plan;
  args.cache_seqlens = cache_seqlens;
  args.stream = stream;
  Status status(mla_schedule_create(&args));
  INFO(describe(status));
  REQUIRE(!status);
  return ScheduleHandle(args.schedule);
}

// mla_reference_check that must succeed; its verdict is in the returned struct, its summary
// line in `*summary` when given (the struct's summary pointer is cleared: the text is a copy).
inline mla_reference_check_args reference_check(const mla_plan* plan, const mla_tensors& tensors,
                                                std::string* summary = nullptr) {
  char buffer[512] = {};
  mla_reference_check_args args{};
  args.struct_size = sizeof args;
  args.plan = plan;
  args.tensors = &tensors;
  if (summary) {
    args.summary = buffer;
    args.summary_capacity = sizeof buffer;
  }
  Status status(mla_reference_check(&args));
  INFO(describe(status));
  REQUIRE(!status);
  if (summary) *summary = buffer;
  args.summary = nullptr;
  args.summary_capacity = 0;
  return args;
}

// mla_device_supports on `problem`, the call itself expected to succeed; the answer (supported,
// code, reason into `reason`) is in the returned struct.
inline mla_supports_args ask_supports(mla_device* device, const mla_problem& problem, char* reason, size_t capacity) {
  mla_supports_args a{};
  a.struct_size = sizeof a;
  a.device = device;
  a.problem = &problem;
  a.reason = reason;
  a.reason_capacity = capacity;
  Status status(mla_device_supports(&a));
  INFO(describe(status));
  REQUIRE(!status);
  return a;
}

}  // namespace mla::testing
