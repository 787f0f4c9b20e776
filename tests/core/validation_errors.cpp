// Every contract check gives a typed error whose message names the field, what was expected
// and what was given.
#include <catch2/catch.hpp>

#include <functional>

#include "mla/validate.hpp"
#include "test_support.hpp"

using namespace mla;

namespace {

struct Fixture {
  HostInputs in;
  Fixture() {
    InputSpec spec;
    spec.seqlens = {40, 70, 10, 0};
    in = make_random_inputs(testing::small_problem(4, 1, 8, 1, false, 16), spec);
  }
};

std::string error_of(const std::function<void()>& f, ErrorCode expected_code = ErrorCode::invalid_argument) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(e.code() == expected_code);
    return e.what();
  }
  FAIL("no error was raised");
  return "";
}

}  // namespace

TEST_CASE("argument validation names field, expectation and what was given", "[core][validation]") {
  Fixture f;
  const Problem& p = f.in.problem;
  auto check_args = [&](RunArgs a) { return error_of([&] { validate_args(p, a, MemorySpace::host); }); };

  SECTION("block_table dtype") {
    HostTensor wrong(DType::int64, {4, p.max_blocks_per_seq});
    RunArgs a = f.in.args();
    a.block_table = wrong.view();
    CHECK(check_args(a) == "block_table: expected int32 [4, " + std::to_string(p.max_blocks_per_seq) + "], got int64 [4, " +
                               std::to_string(p.max_blocks_per_seq) + "]");
  }
  SECTION("q shape") {
    HostTensor wrong(DType::bf16, {4, 1, 8, 512});
    RunArgs a = f.in.args();
    a.q = wrong.view();
    CHECK(check_args(a) == "q: expected bf16 [4, 1, 8, 576], got bf16 [4, 1, 8, 512]");
  }
  SECTION("null pointer") {
    RunArgs a = f.in.args();
    a.out.data = nullptr;
    CHECK_THAT(check_args(a), Catch::StartsWith("out: data pointer is null"));
  }
  SECTION("wrong memory space") {
    RunArgs a = f.in.args();
    a.kv_cache.space = MemorySpace::device;
    CHECK(check_args(a) == "kv_cache: expected host memory, got device memory");
  }
  SECTION("misaligned pointer") {
    RunArgs a = f.in.args();
    a.lse.data = static_cast<char*>(a.lse.data) + 1;
    CHECK_THAT(check_args(a), Catch::Contains("lse: data pointer is not aligned"));
  }
  SECTION("non-contiguous last dimension") {
    RunArgs a = f.in.args();
    a.q.strides[3] = 2;
    CHECK_THAT(check_args(a), Catch::Contains("q: the last dimension must be contiguous"));
  }
  SECTION("negative stride") {
    RunArgs a = f.in.args();
    a.kv_cache.strides[0] = -a.kv_cache.strides[0];
    CHECK_THAT(check_args(a), Catch::Contains("kv_cache: negative stride"));
  }
  SECTION("overlapping rows") {
    RunArgs a = f.in.args();
    a.out.strides[2] = 1;
    CHECK_THAT(check_args(a), Catch::Contains("out: stride 1 of dimension 2 overlaps"));
  }
  SECTION("tensor of the other variant") {
    RunArgs a = f.in.args();
    a.w_uk = a.q;
    CHECK(check_args(a) == "w_uk: not used by the latent variant; leave it empty");
  }
  SECTION("lse dtype") {
    HostTensor wrong(DType::bf16, {4, 8, 1});
    RunArgs a = f.in.args();
    a.lse = wrong.view();
    CHECK(check_args(a) == "lse: expected fp32 [4, 8, 1], got bf16 [4, 8, 1]");
  }
}

TEST_CASE("problem validation", "[core][validation]") {
  Problem p = testing::small_problem(2, 1, 8, 1, false, 16);
  p.num_blocks = 8;
  p.max_blocks_per_seq = 4;
  auto msg = [&](Problem q) { return error_of([&] { validate_problem(q); }); };
  Problem q = p;
  q.h_q = 7, q.h_kv = 2;
  CHECK(msg(q) == "problem.h_q: expected a multiple of h_kv = 2, got 7");
  q = p, q.batch = 0;
  CHECK(msg(q) == "problem.batch: expected 1 <= value <= 1048576, got 0");
  q = p, q.page_size = 0;
  CHECK_THAT(msg(q), Catch::StartsWith("problem.page_size: expected 1 <="));
  q = p, q.softmax_scale = std::numeric_limits<float>::quiet_NaN();
  CHECK_THAT(msg(q), Catch::StartsWith("problem.softmax_scale: expected a finite value"));
  q = p, q.dtype = DType::int32;
  CHECK(msg(q) == "problem.dtype: expected bf16, fp16 or fp32, got int32");
  q = p, q.kv_format = static_cast<KvFormat>(0);
  CHECK_THAT(msg(q), Catch::StartsWith("kv format: unknown value 0 (expected one of bf16,"));
  q = p, q.kv_format = KvFormat::fp8_ds_mla, q.d_c = 64;
  CHECK_THAT(msg(q), Catch::StartsWith("problem.d_c: the fp8_ds_mla KV format needs d_c a multiple of 128"));
  q = p, q.max_blocks_per_seq = 1 << 20, q.page_size = 1 << 12;
  CHECK_THAT(msg(q), Catch::Contains("must fit int32 lengths"));
}

TEST_CASE("lengths and block ids are checked in validate mode", "[core][validation]") {
  Fixture f;
  auto device = open_device(testing::config_for("cpu"));
  auto plan = device->plan(f.in.problem);
  auto schedule = plan->schedule(f.in.cache_seqlens.view());
  SECTION("block id out of range") {
    f.in.block_table.as<int32_t>()[f.in.problem.max_blocks_per_seq + 1] = 2147480000;
    std::string m = error_of([&] { plan->run(f.in.args(), *schedule, nullptr, RunOptions{true}); });
    CHECK(m == "block_table[1][1]: expected a block id in [0, " + std::to_string(f.in.problem.num_blocks) +
                   "), got 2147480000");
  }
  SECTION("negative length") {
    f.in.cache_seqlens.as<int32_t>()[2] = -5;
    std::string m = error_of([&] { plan->schedule(f.in.cache_seqlens.view()); });
    CHECK_THAT(m, Catch::StartsWith("cache_seqlens[2]: expected 0 <= length <= "));
    CHECK_THAT(m, Catch::EndsWith("got -5"));
  }
  SECTION("length beyond the block table") {
    f.in.cache_seqlens.as<int32_t>()[0] = 1 << 30;
    CHECK_THAT(error_of([&] { plan->schedule(f.in.cache_seqlens.view()); }), Catch::Contains("max_blocks_per_seq * page_size"));
  }
  SECTION("a schedule made for other lengths") {
    f.in.cache_seqlens.as<int32_t>()[0] = 41;
    CHECK_THAT(error_of([&] { plan->run(f.in.args(), *schedule); }), Catch::Contains("call schedule() again"));
  }
}
