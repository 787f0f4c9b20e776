// Config parsing and the errors a user sees: JSON paths, capacity refusals with byte counts.
#include <catch2/catch.hpp>

#include "mla/error.hpp"
#include "sim_tpu_helpers.hpp"

using namespace mla;
using sim_tpu_test::small_config;

namespace {
std::string issues_text(const nlohmann::json& config) {
  std::string s;
  for (const auto& issue : validate_config(config)) s += issue.to_string() + "\n";
  return s;
}
}  // namespace

TEST_CASE("sim_tpu shipped configs are valid", "[sim_tpu]") {
  for (const char* file : {"sc11_fp300.json", "ascend910b.json"}) {
    INFO(file);
    CHECK(issues_text(sim_tpu_test::shipped_config(file)).empty());
  }
}

TEST_CASE("sim_tpu config errors name the JSON path", "[sim_tpu]") {
  nlohmann::json c = small_config("auto", true);
  c["chip"]["ddr"]["bandwith_gbps"] = 5;
  c["chip"]["core"]["local_memory_bytes"] = "lots";
  c["kernel"]["partition"] = "head";
  c["topology"]["tensor_parallel"] = 3;
  c["chip"]["cores"] = 0;
  const std::string text = issues_text(c);
  INFO(text);
  CHECK(text.find("/chip/ddr/bandwith_gbps") != std::string::npos);
  CHECK(text.find("bandwidth_gbps") != std::string::npos);  // the suggestion
  CHECK(text.find("/chip/core/local_memory_bytes") != std::string::npos);
  CHECK(text.find("/kernel/partition") != std::string::npos);
  CHECK(text.find("/topology/tensor_parallel") != std::string::npos);
  CHECK(text.find("/chip/cores") != std::string::npos);
}

TEST_CASE("sim_tpu refuses a tiling that does not fit LMEM or L2, with both byte counts", "[sim_tpu]") {
  Problem p;
  p.batch = 1;
  p.h_q = 16;
  p.num_blocks = 4;
  p.max_blocks_per_seq = 4;
  nlohmann::json c = small_config("batch", true);
  c["kernel"]["kv_tile_tokens"] = 4096;
  c["kernel"]["l2_chunk_tokens"] = 4096;
  auto device = open_device(c);
  try {
    (void)device->plan(p);
    FAIL("plan accepted a 4096-token tile in 4 MiB of LMEM");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::out_of_memory);
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("LMEM holds 4194304 bytes") != std::string::npos);
    CHECK(what.find("needs") != std::string::npos);
  }
  c["kernel"]["kv_tile_tokens"] = 16;
  c["kernel"]["l2_chunk_tokens"] = 1 << 20;
  auto device2 = open_device(c);
  try {
    (void)device2->plan(p);
    FAIL("plan accepted L2 buffers larger than L2");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::out_of_memory);
    CHECK(std::string(e.what()).find("L2 SRAM holds 33554432 bytes") != std::string::npos);
  }
  // Auto tiling shrinks the tile instead of failing.
  c["kernel"]["kv_tile_tokens"] = 0;
  c["kernel"]["l2_chunk_tokens"] = 0;
  auto device3 = open_device(c);
  CHECK_NOTHROW(device3->plan(p));
}

TEST_CASE("sim_tpu rejects a schedule made for other lengths", "[sim_tpu]") {
  Problem p;
  p.batch = 2;
  p.h_q = 4;
  InputSpec spec;
  spec.seqlens = {10, 20};
  HostInputs in = make_random_inputs(p, spec);
  auto device = open_device(small_config("auto", true));
  auto plan = device->plan(in.problem);
  auto schedule = plan->schedule(in.cache_seqlens.view());
  in.cache_seqlens.as<int32_t>()[1] = 19;
  CHECK_THROWS_AS(plan->run(in.args(), *schedule), Error);
}
