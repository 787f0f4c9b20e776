// Per-engine command streams of one chip: what the lowering produces and the timing engine
// consumes. Commands of one lane run in the order they were appended; `deps` add the waits
// across lanes (a load waits for the buffer it overwrites to be consumed, and so on).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mla::sim_tpu {

enum class EngineKind : uint8_t { sdma = 0, gdma = 1, bdc = 2 };
const char* engine_name(EngineKind kind);

enum class MemoryKind : uint8_t { none = 0, ddr = 1, l2 = 2, lmem = 3 };
inline constexpr int kMemoryKinds = 4;
const char* memory_name(MemoryKind kind);

enum class Op : uint8_t {
  gather_kv,       // SDMA: a sequence chunk's pages, DDR -> contiguous L2 buffer
  load_kv_tile,    // GDMA: L2 -> LMEM
  load_query,      // GDMA: DDR -> LMEM
  load_weights,    // GDMA: DDR -> LMEM (absorb)
  project_query,   // BDC: q_nope @ w_uk (absorb)
  dequant_tile,    // BDC (vector unit): a quantized KV tile to the compute dtype (fp8_ds_mla)
  attend_tile,     // BDC: scores, online softmax, P @ V for one KV tile
  finalize,        // BDC: normalise (and o_latent @ w_uv in absorb)
  store_output,    // GDMA: LMEM -> DDR
  store_partial,   // GDMA: LMEM -> L2 (split-KV partial out + lse)
  load_partial,    // GDMA: L2 -> LMEM
  merge_partial,   // BDC: LSE-weighted merge of one partial
};
const char* op_name(Op op);

struct Lane {
  EngineKind kind = EngineKind::bdc;
  int32_t core = -1;             // -1 for the chip's SDMA engines
  int32_t index = 0;             // SDMA engine number
  double bytes_per_ns = 0;       // DMA engines: their own bandwidth cap
  [[nodiscard]] std::string name() const;
};

struct Command {
  int32_t lane = 0;
  Op op = Op::attend_tile;
  MemoryKind src = MemoryKind::none, dst = MemoryKind::none;
  int32_t seq = -1;
  double bytes = 0;       // DMA payload
  double fixed_ns = 0;    // DMA: descriptor overheads and memory latency; BDC: the whole duration
  double flops = 0;       // useful matrix FLOPs (BDC), for the FLOP rate
  int32_t dep_begin = 0;  // deps[dep_begin, dep_end) must finish before this starts
  int32_t dep_end = 0;
};

struct ChipProgram {
  std::vector<Lane> lanes;
  std::vector<Command> commands;
  std::vector<int32_t> deps;
  double ddr_bytes_per_ns = 0;  // shared by every transfer that reads or writes DDR
  double l2_bytes_per_ns = 0;   // shared by every transfer that reads or writes L2
};

}  // namespace mla::sim_tpu
