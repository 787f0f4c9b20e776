// The simulated NPU's hardware description and kernel options, read from the device config
// ("topology", "chip", "kernel", "trace_file"). Every field and its unit: docs/backends/sim_tpu.md.
#pragma once

#include <cstdint>
#include <string>

#include "mla/config.hpp"

namespace mla::sim_tpu {

// Cards are grouped into tensor-parallel groups of `tensor_parallel` cards: the heads are split
// across the cards of a group, and the groups (cards / tensor_parallel of them) split the batch.
// Context parallelism (docs/context-parallel.md) over `ranks` copies of the topology above:
// every sequence's tokens split in rank order, each rank's partial out and LSE exchanged over
// the link between ranks (a ring all-gather: ranks - 1 hops) and merged on every rank. With
// ranks > 1 the modelled step is that: the largest shard's step, the exchange, the merge.
struct ContextParallel {
  int64_t ranks = 1;
  double link_bandwidth_gbps = 0;  // one direction between neighbouring ranks, GB/s (1e9 bytes/s)
  double link_latency_us = 0;      // per hop
};

struct Topology {
  int64_t cards = 1;
  int64_t chips_per_card = 1;
  int64_t tensor_parallel = 1;
  ContextParallel context_parallel;
};

struct MemoryLevel {
  int64_t bytes = 0;
  double bandwidth_gbps = 0;  // aggregate over the chip, GB/s (1e9 bytes/s)
  double latency_ns = 0;      // added once to every DMA command that touches this memory
};

struct DmaEngine {
  int64_t engines = 1;               // SDMA only: engines per chip
  double bandwidth_gbps = 0;         // per engine
  double command_overhead_ns = 0;    // per descriptor (a paged gather has one per page)
};

// Vector ops per KV value the BDC dequantizes (fp8 -> compute dtype, then times its group's
// scale): what turns vector_gops into the default dequantization throughput.
inline constexpr double kVectorOpsPerDequantValue = 2;

struct CoreModel {
  int64_t local_memory_bytes = 0;    // LMEM
  double bdc_bf16_tflops = 0;        // matrix throughput per dtype
  double bdc_fp16_tflops = 0;
  double bdc_fp32_tflops = 0;
  int64_t bdc_row_granularity = 1;   // matrix rows are padded up to a multiple of this
  double vector_gops = 0;            // exp / max / scale work, elementwise ops per ns * 1e9
  // KV values the BDC's vector unit dequantizes per ns (fp8_ds_mla tiles, before the matmuls);
  // default vector_gops / kVectorOpsPerDequantValue.
  double dequant_values_per_ns = 0;
  double bdc_command_overhead_cycles = 0;
};

struct ChipModel {
  int64_t cores = 1;
  double clock_ghz = 1.0;
  CoreModel core;
  MemoryLevel l2;
  MemoryLevel ddr;
  DmaEngine sdma;
  DmaEngine gdma;
};

struct KernelOptions {
  bool double_buffer = true;
  std::string partition = "auto";  // auto | heads | batch | sequence
  int64_t kv_tile_tokens = 0;      // keys per BDC step; 0 = the largest that fits LMEM
  int64_t l2_chunk_tokens = 0;     // keys per SDMA gather into L2; 0 = 2048, halved until L2 fits
  bool timing_only = false;        // model time only; outputs are left untouched
};

struct SimConfig {
  Topology topology;
  ChipModel chip;
  KernelOptions kernel;
  std::string trace_file;  // when non-empty, every run writes a Chrome-trace JSON here
};

SimConfig parse_sim_config(ConfigReader& root);

}  // namespace mla::sim_tpu
