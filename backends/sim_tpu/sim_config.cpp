#include "sim_config.hpp"

namespace mla::sim_tpu {

namespace {

constexpr double kBig = 1e12;

MemoryLevel read_memory(ConfigReader& parent, const std::string& key) {
  MemoryLevel m;
  ConfigReader r = parent.object(key);
  m.bytes = r.required_integer("bytes", 1, INT64_MAX);
  m.bandwidth_gbps = r.required_number("bandwidth_gbps", 1e-6, kBig);
  m.latency_ns = r.number("latency_ns", 0, 0, 1e9);
  r.finish();
  return m;
}

DmaEngine read_dma(ConfigReader& parent, const std::string& key, bool has_engine_count) {
  DmaEngine d;
  ConfigReader r = parent.object(key);
  if (has_engine_count) d.engines = r.integer("engines", 1, 1, 64);
  d.bandwidth_gbps = r.required_number("bandwidth_gbps", 1e-6, kBig);
  d.command_overhead_ns = r.number("command_overhead_ns", 0, 0, 1e9);
  r.finish();
  return d;
}

}  // namespace

SimConfig parse_sim_config(ConfigReader& root) {
  SimConfig c;
  c.trace_file = root.string("trace_file", "");

  ConfigReader topo = root.object("topology");
  c.topology.cards = topo.integer("cards", 1, 1, 4096);
  c.topology.chips_per_card = topo.integer("chips_per_card", 1, 1, 64);
  c.topology.tensor_parallel = topo.integer("tensor_parallel", 1, 1, 4096);
  if (c.topology.cards % c.topology.tensor_parallel != 0)
    topo.add_issue("tensor_parallel", "expected a divisor of cards = " + std::to_string(c.topology.cards) + ", got " +
                                          std::to_string(c.topology.tensor_parallel));
  if (topo.has("context_parallel")) {
    ConfigReader cp = topo.object("context_parallel");
    ContextParallel& x = c.topology.context_parallel;
    x.ranks = cp.integer("ranks", 1, 1, 4096);
    x.link_bandwidth_gbps = x.ranks > 1 ? cp.required_number("link_bandwidth_gbps", 1e-6, kBig)
                                        : cp.number("link_bandwidth_gbps", 0, 0, kBig);
    x.link_latency_us = cp.number("link_latency_us", 0, 0, 1e9);
    cp.finish();
  }
  topo.finish();

  ConfigReader chip = root.object("chip");
  c.chip.cores = chip.required_integer("cores", 1, 4096);
  c.chip.clock_ghz = chip.number("clock_ghz", 1.0, 1e-3, 100);
  {
    ConfigReader core = chip.object("core");
    CoreModel& m = c.chip.core;
    m.local_memory_bytes = core.required_integer("local_memory_bytes", 1024, INT64_MAX);
    m.bdc_bf16_tflops = core.required_number("bdc_bf16_tflops", 1e-6, kBig);
    m.bdc_fp16_tflops = core.number("bdc_fp16_tflops", m.bdc_bf16_tflops, 1e-6, kBig);
    m.bdc_fp32_tflops = core.number("bdc_fp32_tflops", m.bdc_bf16_tflops / 4, 1e-6, kBig);
    m.bdc_row_granularity = core.integer("bdc_row_granularity", 1, 1, 4096);
    m.vector_gops = core.required_number("vector_gops", 1e-6, kBig);
    m.dequant_values_per_ns =
        core.number("dequant_values_per_ns", m.vector_gops / kVectorOpsPerDequantValue, 1e-6, kBig);
    m.bdc_command_overhead_cycles = core.number("bdc_command_overhead_cycles", 0, 0, 1e9);
    core.finish();
  }
  c.chip.l2 = read_memory(chip, "l2_sram");
  c.chip.ddr = read_memory(chip, "ddr");
  c.chip.sdma = read_dma(chip, "sdma", true);
  c.chip.gdma = read_dma(chip, "gdma", false);
  chip.finish();

  ConfigReader kernel = root.object("kernel");
  c.kernel.double_buffer = kernel.boolean("double_buffer", c.kernel.double_buffer);
  c.kernel.partition = kernel.choice("partition", c.kernel.partition, {"auto", "heads", "batch", "sequence"});
  c.kernel.kv_tile_tokens = kernel.integer("kv_tile_tokens", 0, 0, 1 << 20);
  c.kernel.l2_chunk_tokens = kernel.integer("l2_chunk_tokens", 0, 0, 1 << 24);
  c.kernel.timing_only = kernel.boolean("timing_only", false);
  if (c.kernel.kv_tile_tokens > 0 && c.kernel.l2_chunk_tokens > 0 &&
      c.kernel.l2_chunk_tokens % c.kernel.kv_tile_tokens != 0)
    kernel.add_issue("l2_chunk_tokens", "expected a multiple of kv_tile_tokens = " +
                                            std::to_string(c.kernel.kv_tile_tokens) + ", got " +
                                            std::to_string(c.kernel.l2_chunk_tokens));
  kernel.finish();
  return c;
}

}  // namespace mla::sim_tpu
