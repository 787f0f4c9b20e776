#include "report.hpp"

#include <cstdio>

#include <nlohmann/json.hpp>

namespace mla::sim_tpu {

namespace {

std::string format(const char* fmt, double a, double b = 0, double c = 0) {
  char buf[160];
  std::snprintf(buf, sizeof buf, fmt, a, b, c);
  return buf;
}

std::string engine_key(int kind) { return kind == 0 ? "sdma" : kind == 1 ? "gdma" : "bdc"; }

}  // namespace

StepTotals step_totals(const StepModel& model) {
  StepTotals t;
  for (const SimulatedChip& chip : model.chips) {
    const double k = static_cast<double>(chip.copies);
    t.chips_busy += chip.copies;
    t.commands += static_cast<int64_t>(chip.program.commands.size());
    for (const Command& c : chip.program.commands) {
      if (c.op == Op::dequant_tile) t.dequant_ns += c.fixed_ns * k;
      t.bytes_read[static_cast<size_t>(c.src)] += c.bytes * k;
      t.bytes_written[static_cast<size_t>(c.dst)] += c.bytes * k;
      t.flops += c.flops * k;
    }
    for (size_t lane = 0; lane < chip.program.lanes.size(); ++lane) {
      const size_t kind = static_cast<size_t>(chip.program.lanes[lane].kind);
      t.busy_ns[kind] += chip.timeline.lane_busy_ns[lane] * k;
      t.instances[kind] += k;
    }
  }
  return t;
}

std::string kernel_label(const Problem& p, const std::string& partition, bool double_buffer) {
  return std::string("sim_tpu_") + variant_name(p.variant) + "_" + partition + (double_buffer ? "_double_buffer" : "_single_buffer");
}

std::string make_report(const Problem& p, const SimConfig& c, const StepModel& m, bool timing_only) {
  const StepTotals t = step_totals(m);
  const Tiling& tiling = m.work.tiling;
  const double latency_s = m.latency_ns * 1e-9;
  const double chips = static_cast<double>(t.chips_busy);
  const double us = m.latency_ns * 1e-3;
  nlohmann::json j;
  j["latency_s"] = latency_s;
  j["simulated"] = true;
  j["timing_only"] = timing_only;
  j["strategy"] = strategy_name(m.work.strategy);
  j["strategy_reason"] = m.why;
  j["double_buffer"] = tiling.double_buffer;
  j["kv_tile_tokens"] = tiling.kv_tile_tokens;
  j["l2_chunk_tokens"] = tiling.l2_chunk_tokens;
  j["weights_resident"] = tiling.weights_resident;
  j["lmem_bytes_used_per_core"] = tiling.lmem_bytes_used;
  j["lmem_bytes_per_core"] = c.chip.core.local_memory_bytes;
  j["l2_bytes_used_per_chip"] = tiling.l2_bytes_used;
  j["l2_bytes_per_chip"] = c.chip.l2.bytes;
  j["kv_format"] = kv_format_name(p.kv_format);
  j["kv_token_bytes"] = kv_token_bytes(p.kv_format, p.d_c, p.d_r);
  const double bdc_instances = t.instances[static_cast<size_t>(EngineKind::bdc)];
  const double dequant_per_core = bdc_instances > 0 ? t.dequant_ns / bdc_instances : 0;
  j["dequant_s_per_core"] = dequant_per_core * 1e-9;
  j["chips_busy"] = t.chips_busy;
  j["chips_total"] = c.topology.cards * c.topology.chips_per_card;
  j["chips_simulated"] = m.chips.size();
  j["commands_simulated"] = t.commands;
  nlohmann::json candidates = nlohmann::json::array();
  for (const CandidateResult& r : m.candidates) {
    nlohmann::json x;
    x["strategy"] = strategy_name(r.strategy);
    if (r.latency_ns >= 0) x["latency_s"] = r.latency_ns * 1e-9;
    else x["refusal"] = r.refusal;
    candidates.push_back(x);
  }
  j["candidates"] = candidates;
  if (m.context_parallel.ranks > 1) {
    const ContextParallelStep& x = m.context_parallel;
    j["context_parallel"] = {{"ranks", x.ranks},
                             {"exchange", context_exchange_name(x.exchange)},
                             {"shard_s", x.shard_ns * 1e-9},
                             {"exchange_s", x.exchange_ns * 1e-9},
                             {"merge_s", x.merge_ns * 1e-9},
                             {"bytes_per_rank", x.bytes_per_rank},
                             {"link_bandwidth_gbps", c.topology.context_parallel.link_bandwidth_gbps},
                             {"link_latency_us", c.topology.context_parallel.link_latency_us}};
  }

  nlohmann::json engines;
  std::string engine_line = "engines (busy per engine, utilisation):";
  for (int k = 0; k < 3; ++k) {
    const double per = t.instances[static_cast<size_t>(k)] > 0 ? t.busy_ns[static_cast<size_t>(k)] / t.instances[static_cast<size_t>(k)] : 0;
    const double util = m.latency_ns > 0 ? per / m.latency_ns : 0;
    engines[engine_key(k)] = {{"instances", t.instances[static_cast<size_t>(k)]}, {"busy_s_per_engine", per * 1e-9}, {"utilisation", util}};
    engine_line.append(" ").append(engine_name(static_cast<EngineKind>(k)));
    engine_line.append(format(" %.2f us (%.1f%%)", per * 1e-3, util * 100));
    if (k < 2) engine_line += ",";
  }
  j["engines"] = engines;

  nlohmann::json bytes;
  for (int k = 1; k < kMemoryKinds; ++k) {
    bytes[std::string(memory_name(static_cast<MemoryKind>(k))) + "_read"] = t.bytes_read[static_cast<size_t>(k)];
    bytes[std::string(memory_name(static_cast<MemoryKind>(k))) + "_written"] = t.bytes_written[static_cast<size_t>(k)];
  }
  j["bytes"] = bytes;
  j["flops"] = t.flops;

  const double ddr_bytes = t.bytes_read[1] + t.bytes_written[1];
  const double ddr_gbps_per_chip = latency_s > 0 && chips > 0 ? ddr_bytes / latency_s / chips * 1e-9 : 0;
  const double tflops = latency_s > 0 ? t.flops / latency_s * 1e-12 : 0;
  const double peak_tflops = chips * static_cast<double>(c.chip.cores) *
                             (p.dtype == DType::bf16 ? c.chip.core.bdc_bf16_tflops
                              : p.dtype == DType::fp16 ? c.chip.core.bdc_fp16_tflops
                                                       : c.chip.core.bdc_fp32_tflops);
  j["achieved"] = {{"ddr_gbps_per_chip", ddr_gbps_per_chip},
                   {"ddr_fraction_of_peak", ddr_gbps_per_chip / c.chip.ddr.bandwidth_gbps},
                   {"tflops", tflops},
                   {"tflops_fraction_of_peak", peak_tflops > 0 ? tflops / peak_tflops : 0}};

  std::vector<std::string> summary;
  summary.push_back(format("simulated latency: %.2f us", us) + " (" + strategy_name(m.work.strategy) +
                     " partition, double buffering " + (tiling.double_buffer ? "on" : "off") + ", kv tile " +
                     std::to_string(tiling.kv_tile_tokens) + " tokens, L2 chunk " + std::to_string(tiling.l2_chunk_tokens) +
                     " tokens" + (p.variant == Variant::absorb ? (tiling.weights_resident ? ", weights resident" : ", weights streamed") : "") + ")");
  summary.push_back("strategy: " + m.why);
  summary.push_back(engine_line);
  summary.push_back(format("bytes: DDR read %.3f MB, DDR written %.3f MB, ", t.bytes_read[1] * 1e-6, t.bytes_written[1] * 1e-6) +
                    format("L2 read %.3f MB, L2 written %.3f MB, LMEM in %.3f MB", t.bytes_read[2] * 1e-6,
                           t.bytes_written[2] * 1e-6, t.bytes_written[3] * 1e-6));
  summary.push_back(format("achieved: DDR %.1f GB/s per chip (%.1f%% of peak), BDC %.2f TFLOP/s", ddr_gbps_per_chip,
                           100 * ddr_gbps_per_chip / c.chip.ddr.bandwidth_gbps, tflops) +
                    format(" (%.1f%% of %.1f TFLOP/s peak of the busy chips)", peak_tflops > 0 ? 100 * tflops / peak_tflops : 0, peak_tflops));
  if (is_quantized(p.kv_format)) {
    const double bdc_busy = bdc_instances > 0 ? t.busy_ns[static_cast<size_t>(EngineKind::bdc)] / bdc_instances : 0;
    summary.push_back(std::string("kv cache: ") + kv_format_name(p.kv_format) + ", " +
                      std::to_string(kv_token_bytes(p.kv_format, p.d_c, p.d_r)) + " bytes per token; " +
                      (t.dequant_ns > 0 ? format("BDC dequant_tile %.2f us per core (%.1f%% of its busy time)", dequant_per_core * 1e-3,
                                                 bdc_busy > 0 ? 100 * dequant_per_core / bdc_busy : 0)
                                        : std::string("scales folded into q and out, no per-key dequantization")));
  }
  summary.push_back(format("memory use: LMEM %.0f of %.0f bytes per core, L2 %.0f", static_cast<double>(tiling.lmem_bytes_used),
                           static_cast<double>(c.chip.core.local_memory_bytes), static_cast<double>(tiling.l2_bytes_used)) +
                    format(" of %.0f bytes per chip", static_cast<double>(c.chip.l2.bytes)));
  summary.push_back(format("chips: %.0f busy of %.0f, %.0f simulated", chips,
                           static_cast<double>(c.topology.cards * c.topology.chips_per_card), static_cast<double>(m.chips.size())) +
                    " (" + std::to_string(t.commands) + " commands)");
  if (timing_only) summary.push_back("timing only: no arithmetic was done, outputs were left untouched");
  j["summary"] = summary;
  return j.dump();
}

}  // namespace mla::sim_tpu
