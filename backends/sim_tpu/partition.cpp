#include "partition.hpp"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "mla/dtype.hpp"
#include "mla/error.hpp"

namespace mla::sim_tpu {

const char* strategy_name(Strategy strategy) {
  switch (strategy) {
    case Strategy::heads: return "heads";
    case Strategy::batch: return "batch";
    case Strategy::sequence: return "sequence";
  }
  return "?";
}

namespace {

constexpr int64_t kDefaultChunkTokens = 2048;  // Sophgo's MLA kernel tiles sequences in 2048-key chunks
constexpr int64_t kLargestAutoTile = 512;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Heads [begin, +count) split over `parts` cores as evenly as possible: part k.
HeadRange split_heads(HeadRange all, int64_t parts, int64_t k) {
  const int64_t lo = all.count * k / parts, hi = all.count * (k + 1) / parts;
  return {all.begin + lo, hi - lo};
}

int64_t kv_heads_spanned(const Problem& p, HeadRange r) {
  if (r.count == 0) return 0;
  const int64_t group = p.heads_per_kv();
  return (r.begin + r.count - 1) / group - r.begin / group + 1;
}

// The head ranges one core may be given under `strategy`, over every tensor-parallel rank.
std::vector<HeadRange> core_head_ranges(const Problem& p, const SimConfig& c, Strategy strategy) {
  std::vector<HeadRange> out;
  for (int64_t rank = 0; rank < c.topology.tensor_parallel; ++rank) {
    HeadRange all = heads_of_rank(p, c.topology, rank);
    if (all.count == 0) continue;
    if (strategy != Strategy::heads) {
      out.push_back(all);
      continue;
    }
    const int64_t parts = std::min(c.chip.cores, all.count);
    for (int64_t k = 0; k < parts; ++k) out.push_back(split_heads(all, parts, k));
  }
  return out;
}

int64_t kv_row_bytes(const Problem& p) {
  return p.h_kv * kv_token_bytes(p.kv_format, p.d_c, p.d_r);
}

int64_t l2_bytes_needed(const Problem& p, const SimConfig& c, Strategy strategy, int64_t chunk, bool double_buffer) {
  const int64_t buffers = double_buffer ? 2 : 1;
  const int64_t rings = strategy == Strategy::heads ? 1 : c.chip.cores;
  int64_t bytes = rings * buffers * chunk * kv_row_bytes(p);
  if (strategy == Strategy::sequence) {
    // Partials of up to two sequences in flight (one being combined while the next is computed).
    int64_t rows = 0;
    for (const HeadRange& r : core_head_ranges(p, c, strategy)) rows = std::max(rows, r.count * p.s_q);
    bytes += 2 * c.chip.cores * rows * (p.d_v() + 1) * 4;
  }
  return bytes;
}

std::string kib(int64_t bytes) {
  std::ostringstream os;
  os << bytes << " bytes";
  return os.str();
}

}  // namespace

HeadRange heads_of_rank(const Problem& p, const Topology& t, int64_t rank) {
  const int64_t per = ceil_div(p.h_q, t.tensor_parallel);
  const int64_t begin = std::min(p.h_q, rank * per);
  return {begin, std::min(p.h_q, begin + per) - begin};
}

int64_t lmem_bytes_needed(const Problem& p, const SimConfig& c, Strategy strategy, int64_t tile, bool double_buffer,
                          bool weights_resident) {
  const int64_t esize = static_cast<int64_t>(dtype_size(p.dtype));
  const int64_t kv_token = kv_token_bytes(p.kv_format, p.d_c, p.d_r);
  const int64_t buffers = double_buffer ? 2 : 1;
  const bool absorb = p.variant == Variant::absorb;
  int64_t worst = 0;
  for (const HeadRange& r : core_head_ranges(p, c, strategy)) {
    const int64_t rows = r.count * p.s_q;
    int64_t bytes = 0;
    bytes += buffers * rows * p.d_qk() * 4;                                    // fp32 query rows
    if (absorb) bytes += buffers * rows * (p.d_nope + p.d_r) * esize;         // q_nope, q_rope staging
    bytes += buffers * tile * kv_heads_spanned(p, r) * kv_token;   // KV tiles
    if (p.kv().scale == KvScaleKind::in_token)                              // one dequantized staging tile
      bytes += tile * kv_heads_spanned(p, r) * p.d_qk() * esize;
    bytes += rows * tile * 4;                                                 // scores / probabilities
    bytes += rows * (p.d_v() + 2) * 4;                                        // accumulator, max, sum
    bytes += buffers * rows * (p.out_width() * esize + 4);                    // output and lse
    if (absorb) {
      const int64_t per_head = (p.d_nope * p.d_c + p.d_c * p.d_vh) * esize;
      bytes += weights_resident ? r.count * per_head
                                : buffers * std::max(p.d_nope * p.d_c, p.d_c * p.d_vh) * esize;
    }
    if (strategy == Strategy::sequence) bytes += 2 * rows * (p.d_v() + 1) * 4;  // partials being merged
    worst = std::max(worst, bytes);
  }
  return worst;
}

StrategyFit fit_strategy(const Problem& p, const SimConfig& c, Strategy strategy) {
  StrategyFit fit;
  fit.strategy = strategy;
  const KernelOptions& k = c.kernel;
  const int64_t lmem = c.chip.core.local_memory_bytes;
  const bool absorb = p.variant == Variant::absorb;

  std::vector<int64_t> tiles;
  if (k.kv_tile_tokens > 0) {
    tiles.push_back(k.kv_tile_tokens);
  } else {
    for (int64_t t = kLargestAutoTile; t >= 1; t /= 2)
      if (k.l2_chunk_tokens == 0 || k.l2_chunk_tokens % t == 0) tiles.push_back(t);
  }
  // Resident weights first (read once per step); streaming them per work item costs DDR traffic.
  std::optional<std::pair<int64_t, bool>> chosen;
  for (bool resident : absorb ? std::vector<bool>{true, false} : std::vector<bool>{true}) {
    for (int64_t t : tiles) {
      // Resident weights with a tiny tile would be slower than streaming with a normal one.
      if (absorb && resident && k.kv_tile_tokens == 0 && t < 16) break;
      if (lmem_bytes_needed(p, c, strategy, t, k.double_buffer, resident) <= lmem) {
        chosen = std::make_pair(t, resident);
        break;
      }
    }
    if (chosen) break;
  }
  if (!chosen) {
    const int64_t t = tiles.back();
    fit.refusal = std::string(strategy_name(strategy)) + ": LMEM holds " + kib(lmem) + " per core, the tiling needs " +
                  kib(lmem_bytes_needed(p, c, strategy, t, k.double_buffer, false)) + " with kv_tile_tokens = " +
                  std::to_string(t) + (k.kv_tile_tokens > 0 ? " (from the config)" : " (the smallest tried)");
    return fit;
  }

  Tiling tiling;
  tiling.kv_tile_tokens = chosen->first;
  tiling.weights_resident = chosen->second;
  tiling.double_buffer = k.double_buffer;
  tiling.lmem_bytes_used = lmem_bytes_needed(p, c, strategy, tiling.kv_tile_tokens, k.double_buffer, tiling.weights_resident);

  const int64_t l2 = c.chip.l2.bytes;
  if (k.l2_chunk_tokens > 0) {
    tiling.l2_chunk_tokens = k.l2_chunk_tokens;
  } else {
    int64_t chunk = std::max(kDefaultChunkTokens, tiling.kv_tile_tokens);
    while (chunk > tiling.kv_tile_tokens && l2_bytes_needed(p, c, strategy, chunk, k.double_buffer) > l2) chunk /= 2;
    tiling.l2_chunk_tokens = chunk;
  }
  tiling.l2_bytes_used = l2_bytes_needed(p, c, strategy, tiling.l2_chunk_tokens, k.double_buffer);
  if (tiling.l2_bytes_used > l2) {
    fit.refusal = std::string(strategy_name(strategy)) + ": L2 SRAM holds " + kib(l2) + " per chip, the KV buffers need " +
                  kib(tiling.l2_bytes_used) + " with l2_chunk_tokens = " + std::to_string(tiling.l2_chunk_tokens) +
                  (k.l2_chunk_tokens > 0 ? " (from the config)" : " (the smallest tried)");
    return fit;
  }
  fit.tiling = tiling;
  return fit;
}

namespace {

// Greedy longest-first assignment of sequences to `bins`; each bin keeps index order.
std::vector<std::vector<int32_t>> balance(const std::vector<int32_t>& seqs, const int32_t* lens, int64_t bins) {
  std::vector<int32_t> order = seqs;
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return lens[a] > lens[b]; });
  std::vector<int64_t> load(static_cast<size_t>(bins), 0);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(bins));
  for (int32_t s : order) {
    const size_t bin = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    load[bin] += lens[s] + 1;  // +1 spreads empty sequences too
    out[bin].push_back(s);
  }
  for (auto& b : out) std::sort(b.begin(), b.end());
  return out;
}

void split_chip_work(const Problem&, const SimConfig& c, const Tiling& tiling, Strategy strategy,
                     const int32_t* lens, ChipWork& chip, int64_t& partial_slots) {
  const int64_t cores = c.chip.cores;
  const HeadRange all{chip.head_begin, chip.head_count};
  auto item = [&](int32_t seq, int64_t begin, int64_t end, HeadRange h, int64_t core, int64_t slot) {
    WorkItem w;
    w.seq = seq;
    w.begin = static_cast<int32_t>(begin);
    w.end = static_cast<int32_t>(end);
    w.head_begin = static_cast<int32_t>(h.begin);
    w.head_count = static_cast<int32_t>(h.count);
    w.core = static_cast<int32_t>(core);
    w.partial_slot = static_cast<int32_t>(slot);
    chip.items.push_back(w);
  };
  switch (strategy) {
    case Strategy::heads: {
      const int64_t parts = std::min(cores, all.count);
      for (int32_t s : chip.sequences)
        for (int64_t k = 0; k < parts; ++k) item(s, 0, lens[s], split_heads(all, parts, k), k, -1);
      break;
    }
    case Strategy::batch: {
      auto per_core = balance(chip.sequences, lens, cores);
      for (int64_t k = 0; k < cores; ++k)
        for (int32_t s : per_core[static_cast<size_t>(k)]) item(s, 0, lens[s], all, k, -1);
      break;
    }
    case Strategy::sequence: {
      const int64_t tile = tiling.kv_tile_tokens;
      int64_t position = 0;
      for (int32_t s : chip.sequences) {
        const int64_t len = lens[s];
        const int64_t slice = std::max<int64_t>(tile, ceil_div(ceil_div(len, cores), tile) * tile);
        const int64_t slices = std::max<int64_t>(1, ceil_div(len, slice));
        const int64_t home = position++ % cores;  // the core that combines (or runs an unsplit sequence)
        if (slices == 1) {
          item(s, 0, len, all, home, -1);
          continue;
        }
        CombineItem m;
        m.seq = s;
        m.head_begin = static_cast<int32_t>(all.begin);
        m.head_count = static_cast<int32_t>(all.count);
        m.core = static_cast<int32_t>(home);
        m.first_slot = static_cast<int32_t>(partial_slots);
        m.slots = static_cast<int32_t>(slices);
        for (int64_t k = 0; k < slices; ++k)
          item(s, k * slice, std::min(len, (k + 1) * slice), all, k, partial_slots + k);
        partial_slots += slices;
        chip.combines.push_back(m);
      }
      break;
    }
  }
}

}  // namespace

StepWork partition(const Problem& p, const SimConfig& c, const StrategyFit& fit, const int32_t* lens) {
  if (!fit.tiling) fail(ErrorCode::internal, "sim_tpu: partition called for a strategy that does not fit");
  StepWork step;
  step.strategy = fit.strategy;
  step.tiling = *fit.tiling;
  const Topology& t = c.topology;
  const int64_t groups = t.cards / t.tensor_parallel;
  const int64_t slots = groups * t.chips_per_card;
  std::vector<int32_t> all(static_cast<size_t>(p.batch));
  std::iota(all.begin(), all.end(), 0);
  auto per_slot = balance(all, lens, slots);
  for (int64_t rank = 0; rank < t.tensor_parallel; ++rank) {
    const HeadRange heads = heads_of_rank(p, t, rank);
    if (heads.count == 0) continue;
    for (int64_t slot = 0; slot < slots; ++slot) {
      if (per_slot[static_cast<size_t>(slot)].empty()) continue;
      ChipWork chip;
      chip.tp_rank = static_cast<int32_t>(rank);
      chip.dp_slot = static_cast<int32_t>(slot);
      chip.card = static_cast<int32_t>((slot / t.chips_per_card) * t.tensor_parallel + rank);
      chip.chip = static_cast<int32_t>(slot % t.chips_per_card);
      chip.head_begin = static_cast<int32_t>(heads.begin);
      chip.head_count = static_cast<int32_t>(heads.count);
      chip.sequences = per_slot[static_cast<size_t>(slot)];
      split_chip_work(p, c, step.tiling, fit.strategy, lens, chip, step.partial_slots);
      step.chips.push_back(std::move(chip));
    }
  }
  return step;
}

}  // namespace mla::sim_tpu
