// How one decode step is divided over cards, chips and cores: the output of partition(), read
// by the lowering (timing) and by the functional executor (numbers), so both follow one plan.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mla::sim_tpu {

// How the cores of one chip share the chip's work.
enum class Strategy : int {
  heads = 0,     // every core takes a slice of the heads; all cores read each KV chunk from L2
  batch = 1,     // every core takes whole sequences with all of the card's heads
  sequence = 2,  // every sequence is cut into one slice per core; partials merged by their LSEs
};
const char* strategy_name(Strategy strategy);

struct Tiling {
  int64_t kv_tile_tokens = 0;    // keys per BDC step (and per GDMA L2 -> LMEM load)
  int64_t l2_chunk_tokens = 0;   // keys per SDMA gather (one L2 buffer)
  bool double_buffer = true;     // two L2 buffers and two LMEM tile buffers per consumer
  bool weights_resident = true;  // absorb: the core's up-projection weights stay in LMEM
  int64_t lmem_bytes_used = 0;   // per core, worst case over the chip's cores
  int64_t l2_bytes_used = 0;     // per chip
};

// One core's share of one sequence: keys [begin, end) against heads [head_begin, +head_count).
struct WorkItem {
  int32_t seq = 0;
  int32_t begin = 0, end = 0;
  int32_t head_begin = 0, head_count = 0;
  int32_t core = 0;
  int32_t partial_slot = -1;  // >= 0: writes a partial (sequence strategy) instead of the output
};

// Merges the partials of one sequence (sequence strategy) and writes the output.
struct CombineItem {
  int32_t seq = 0;
  int32_t head_begin = 0, head_count = 0;
  int32_t core = 0;
  int32_t first_slot = 0, slots = 0;
};

// The work of one chip: one tensor-parallel rank (a head range) and one data-parallel slot.
struct ChipWork {
  int32_t card = 0, chip = 0;  // where it runs (the first card of its kind)
  int32_t tp_rank = 0, dp_slot = 0;
  int32_t head_begin = 0, head_count = 0;
  std::vector<int32_t> sequences;     // processing order
  std::vector<WorkItem> items;        // in issue order on each core
  std::vector<CombineItem> combines;  // sequence strategy only
};

struct StepWork {
  Strategy strategy = Strategy::heads;
  Tiling tiling;
  std::vector<ChipWork> chips;  // chips with work; idle chips are left out
  int64_t partial_slots = 0;    // rows of the split-KV partial buffers
};

}  // namespace mla::sim_tpu
