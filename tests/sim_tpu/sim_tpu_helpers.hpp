// Shared helpers of the sim_tpu tests: small device configs and one-call runs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "mla/backend.hpp"
#include "mla/inputs.hpp"
#include "mla/registry.hpp"

namespace sim_tpu_test {

// A small machine: 2 cards x 2 chips x 4 cores, tensor parallel 2, so multi-card, multi-chip
// and multi-core paths all run on tiny problems.
inline nlohmann::json small_config(const std::string& partition, bool double_buffer) {
  nlohmann::json c = nlohmann::json::parse(R"({
    "backend": "sim_tpu", "name": "test machine",
    "topology": { "cards": 2, "chips_per_card": 2, "tensor_parallel": 2 },
    "chip": { "cores": 4, "clock_ghz": 1.0,
      "core": { "local_memory_bytes": 4194304, "bdc_bf16_tflops": 10, "bdc_row_granularity": 16,
                "vector_gops": 500, "bdc_command_overhead_cycles": 50 },
      "l2_sram": { "bytes": 33554432, "bandwidth_gbps": 500, "latency_ns": 50 },
      "ddr": { "bytes": 17179869184, "bandwidth_gbps": 200, "latency_ns": 200 },
      "sdma": { "engines": 1, "bandwidth_gbps": 200, "command_overhead_ns": 20 },
      "gdma": { "bandwidth_gbps": 100, "command_overhead_ns": 50 } },
    "kernel": { "kv_tile_tokens": 16, "l2_chunk_tokens": 32 } })");
  c["kernel"]["partition"] = partition;
  c["kernel"]["double_buffer"] = double_buffer;
  return c;
}

inline nlohmann::json shipped_config(const std::string& file) {
  return mla::read_config_file(std::string(MLA_SOURCE_DIR) + "/configs/" + file);
}

struct Outcome {
  mla::RunResult result;
  nlohmann::json report;
};

inline Outcome run_once(const nlohmann::json& config, mla::HostInputs& in) {
  auto device = mla::open_device(config);
  auto plan = device->plan(in.problem);
  auto schedule = plan->schedule(in.cache_seqlens.view());
  Outcome o;
  o.result = plan->run(in.args(), *schedule);
  o.report = nlohmann::json::parse(o.result.report_json);
  return o;
}

// Inputs for timing-only runs: the tensors exist with the right shapes (so run() validates), but
// only lengths and block table hold values; timing-only never reads the rest.
inline mla::HostInputs timing_inputs(mla::Problem p, const std::vector<int32_t>& lens) {
  mla::HostInputs in;
  int64_t pages = 0, max_pages = 1;
  for (int32_t l : lens) {
    pages += (l + p.page_size - 1) / p.page_size;
    max_pages = std::max<int64_t>(max_pages, (l + p.page_size - 1) / p.page_size);
  }
  p.num_blocks = std::max<int64_t>(pages, 1);
  p.max_blocks_per_seq = max_pages;
  in.problem = p;
  in.seqlens = lens;
  const int64_t b = p.batch, s = p.s_q, h = p.h_q;
  if (p.variant == mla::Variant::latent) {
    in.q = mla::HostTensor(p.dtype, {b, s, h, p.d_qk()});
  } else {
    in.q_nope = mla::HostTensor(p.dtype, {b, s, h, p.d_nope});
    in.q_rope = mla::HostTensor(p.dtype, {b, s, h, p.d_r});
    in.w_uk = mla::HostTensor(p.dtype, {h, p.d_nope, p.d_c});
    in.w_uv = mla::HostTensor(p.dtype, {h, p.d_c, p.d_vh});
  }
  in.kv_cache = mla::HostTensor(p.kv().element, {p.num_blocks, p.page_size, p.h_kv, p.kv_token_elements()});
  const std::vector<int64_t> scale_shape = mla::kv_scale_shape(p.kv_format, p.d_c, p.d_r);
  if (!scale_shape.empty()) {
    in.kv_scale = mla::HostTensor(mla::DType::fp32, scale_shape);
    std::fill_n(in.kv_scale.as<float>(), in.kv_scale.view().numel(), 1.0f);
  }
  in.block_table = mla::HostTensor(mla::DType::int32, {b, p.max_blocks_per_seq});
  int32_t next = 0;
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < p.max_blocks_per_seq; ++j)
      in.block_table.as<int32_t>()[i * p.max_blocks_per_seq + j] =
          j * p.page_size < lens[static_cast<size_t>(i)] ? next++ : 0;
  in.cache_seqlens = mla::HostTensor(mla::DType::int32, {b});
  std::copy(lens.begin(), lens.end(), in.cache_seqlens.as<int32_t>());
  in.out = mla::HostTensor(p.dtype, {b, s, h, p.out_width()});
  in.lse = mla::HostTensor(mla::DType::fp32, {b, h, s});
  return in;
}

// Timing-only latency of a problem with equal lengths.
inline double simulated_seconds(nlohmann::json config, mla::Problem p, int64_t seqlen, nlohmann::json* report = nullptr) {
  config["kernel"]["timing_only"] = true;
  mla::HostInputs in = timing_inputs(p, std::vector<int32_t>(static_cast<size_t>(p.batch), static_cast<int32_t>(seqlen)));
  Outcome o = run_once(config, in);
  if (report) *report = o.report;
  return o.result.seconds;
}

}  // namespace sim_tpu_test
