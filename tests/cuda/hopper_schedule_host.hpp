// The Hopper contiguous split-KV schedule computed on the host with the kernel's own arithmetic
// (backends/cuda/hopper/hopper_schedule_math.hpp), writing what hopper_scheduler.cu writes, and
// a checker of the schedule's contract (portable::ScheduleLayout / SplitEntry) that knows
// nothing of the algorithm. No CUDA header: the math test runs without a GPU or toolkit; the
// device test compares the kernel's output with schedule_on_host().
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/hopper/hopper_schedule_math.hpp"

namespace mla::testing::hopper_schedule {

inline constexpr int32_t kBlock = 64;        // keys per KV block
inline constexpr int32_t kOverhead = 5;      // hopper::kBlockOverhead
inline constexpr int32_t kUnwritten = -777;  // what the host fills its arrays with before "launching"

struct Entry {  // portable::SplitEntry without its padding
  int32_t seq = kUnwritten, begin = kUnwritten, end = kUnwritten, slot = kUnwritten, len = kUnwritten;
  bool operator==(const Entry&) const = default;
};

struct Schedule {
  int32_t total_splits = kUnwritten;
  std::vector<int32_t> seq_splits, seq_offset, cta_first;  // [b], [b], [grid + 1]
  std::vector<Entry> entries;                               // [total_splits]
};

// The pieces the scheduler cuts the line into: grid, or sched::aligned_pieces(batch, grid) when
// that partition splits no sequence.
inline int32_t pieces_used(const std::vector<int32_t>& seqlens, int32_t capacity, int32_t grid,
                           int32_t overhead = kOverhead) {
  namespace s = mla::cuda::hopper::sched;
  const int32_t batch = static_cast<int32_t>(seqlens.size());
  const int32_t aligned = s::aligned_pieces(batch, grid);
  if (aligned >= grid) return grid;
  int64_t total = 0;
  for (int32_t len : seqlens) total += s::cost_of(s::clamp_len(len, capacity), overhead);
  const s::Partition alt = s::make_partition(total, aligned);
  int64_t prefix = 0, splits = 0;
  for (int32_t len : seqlens) {
    const int32_t l = s::clamp_len(len, capacity);
    splits += s::place(alt, prefix, l, overhead).splits;
    prefix += s::cost_of(l, overhead);
  }
  return splits == batch ? aligned : grid;
}

// What contiguous_scheduler_kernel writes, computed sequence by sequence (the kernel does the
// same per sequence; only the prefix sums are computed block-wide there). Every slot of
// cta_first and of the first total_splits entries must be written exactly once: `writes`
// counts them (the layout holds batch + grid + 1 entries, the device does not initialise it).
struct HostRun {
  Schedule schedule;
  std::vector<int> cta_first_writes, entry_writes;
};
inline HostRun schedule_on_host(const std::vector<int32_t>& seqlens, int32_t capacity, int32_t grid,
                                int32_t overhead = kOverhead) {
  namespace s = mla::cuda::hopper::sched;
  const int32_t batch = static_cast<int32_t>(seqlens.size());
  HostRun run;
  Schedule& out = run.schedule;
  const size_t max_entries = static_cast<size_t>(batch) + grid + 1;
  out.seq_splits.assign(batch, kUnwritten);
  out.seq_offset.assign(batch, kUnwritten);
  out.cta_first.assign(static_cast<size_t>(grid) + 1, kUnwritten);
  out.entries.assign(max_entries, Entry{});
  run.cta_first_writes.assign(out.cta_first.size(), 0);
  run.entry_writes.assign(max_entries, 0);
  auto set_cta_first = [&](int64_t k, int32_t v) {
    if (k < 0 || k > grid) {  // out of the array: recorded as a write to a bogus slot below
      run.cta_first_writes.push_back(static_cast<int>(k));
      return;
    }
    out.cta_first[k] = v;
    ++run.cta_first_writes[k];
  };
  auto write_entry = [&](const s::Partition& part, const s::Placement& pl, int32_t seq, int32_t offset, int32_t i) {
    const s::KeyRange r = s::split_keys(part, pl, i);
    const size_t at = static_cast<size_t>(offset) + i;
    if (at >= max_entries) {  // past the layout: never allowed
      run.entry_writes.push_back(static_cast<int>(at));
      return;
    }
    out.entries[at] = Entry{seq, r.begin, r.end, s::slot_of(offset + i, pl.splits), pl.len};
    ++run.entry_writes[at];
    if (i > 0) set_cta_first(pl.first_piece + i, offset + i);
  };

  int64_t total = 0;
  for (int32_t len : seqlens) total += s::cost_of(s::clamp_len(len, capacity), overhead);
  const s::Partition part = s::make_partition(total, pieces_used(seqlens, capacity, grid, overhead));
  int64_t prefix = 0;
  int32_t offset = 0, prev_piece = -1;
  for (int32_t i = 0; i < batch; ++i) {
    const int32_t len = s::clamp_len(seqlens[i], capacity);
    const s::Placement pl = s::place(part, prefix, len, overhead);
    if (i == 0) prev_piece = part.piece_before(prefix);
    out.seq_splits[i] = pl.splits;
    out.seq_offset[i] = offset;
    for (int32_t k = prev_piece + 1; k <= pl.first_piece; ++k) set_cta_first(k, offset);
    prev_piece = pl.first_piece + pl.splits - 1;
    for (int32_t e = 0; e < pl.splits; ++e) write_entry(part, pl, i, offset, e);
    prefix += s::cost_of(len, overhead);
    offset += pl.splits;
  }
  for (int32_t k = part.pieces; k <= grid; ++k) set_cta_first(k, offset);
  out.total_splits = offset;
  return run;
}

// The schedule's contract, checked from its outputs alone. Returns "" or the first violation.
inline std::string check_schedule(const std::vector<int32_t>& seqlens, int32_t capacity, int32_t grid,
                                  const Schedule& sc, int32_t overhead = kOverhead) {
  std::ostringstream why;
  const int64_t batch = static_cast<int64_t>(seqlens.size());
  std::vector<int32_t> len(seqlens.size());
  int64_t total_cost = 0;
  for (size_t i = 0; i < seqlens.size(); ++i) {
    len[i] = std::clamp(seqlens[i], 0, capacity);
    total_cost += (len[i] + kBlock - 1) / kBlock + overhead;
  }
  const int64_t n = sc.total_splits;
  if (n < batch || n > batch + grid) {
    why << "total_splits " << n << " outside [batch " << batch << ", batch + grid " << batch + grid << "]";
    return why.str();
  }
  if (n > batch + grid - 1) {  // the sharper bound the math guarantees
    why << "total_splits " << n << " > batch + grid - 1 = " << batch + grid - 1;
    return why.str();
  }
  if (sc.entries.size() < static_cast<size_t>(n) || sc.seq_splits.size() != seqlens.size() ||
      sc.seq_offset.size() != seqlens.size() || sc.cta_first.size() != static_cast<size_t>(grid) + 1)
    return "array sizes";

  // Entries per sequence: contiguous, in sequence order, covering every key block once.
  int64_t next = 0;
  for (int64_t i = 0; i < batch; ++i) {
    const int32_t k = sc.seq_splits[i], off = sc.seq_offset[i];
    if (k < 1 || off != next) {
      why << "sequence " << i << ": splits " << k << ", offset " << off << " (expected " << next << ")";
      return why.str();
    }
    if (len[i] == 0 && k != 1) {
      why << "sequence " << i << " has length 0 and " << k << " splits (expected 1)";
      return why.str();
    }
    std::vector<int> covered((len[i] + kBlock - 1) / kBlock, 0);
    int32_t key = 0;
    for (int32_t s = 0; s < k; ++s) {
      const Entry& e = sc.entries[off + s];
      const int32_t slot = k > 1 ? off + s : -1;
      if (e.seq != i || e.len != len[i] || e.slot != slot || e.begin != key || e.begin % kBlock != 0 ||
          e.end > len[i] || !(e.begin < e.end || (len[i] == 0 && e.begin == 0 && e.end == 0))) {
        why << "entry " << off + s << " (split " << s << " of sequence " << i << ", length " << len[i]
            << "): seq " << e.seq << " begin " << e.begin << " end " << e.end << " slot " << e.slot << " len "
            << e.len << "; expected begin " << key << ", slot " << slot;
        return why.str();
      }
      for (int32_t b = e.begin / kBlock; b < (e.end + kBlock - 1) / kBlock; ++b) ++covered[b];
      key = e.end;
    }
    if (key != len[i]) {
      why << "sequence " << i << ": splits end at key " << key << ", length " << len[i];
      return why.str();
    }
    for (size_t b = 0; b < covered.size(); ++b)
      if (covered[b] != 1) {
        why << "sequence " << i << " block " << b << " covered " << covered[b] << " times";
        return why.str();
      }
    next += k;
  }
  if (next != n) {
    why << "splits sum to " << next << ", total_splits " << n;
    return why.str();
  }

  // Pieces: cta_first monotone from 0 to n; a piece never holds two splits of one sequence (a
  // sequence is split only where a piece ends); cost <= quota; empty only without enough work.
  if (sc.cta_first[0] != 0 || sc.cta_first[grid] != n) {
    why << "cta_first[0] = " << sc.cta_first[0] << ", cta_first[grid] = " << sc.cta_first[grid] << " (total " << n
        << ")";
    return why.str();
  }
  // A schedule that splits no sequence may use fewer pieces (at least 95% of grid, see
  // sched::aligned_pieces): its quota and "empty only without enough work" follow them.
  const int32_t aligned = mla::cuda::hopper::sched::aligned_pieces(static_cast<int32_t>(batch), grid);
  const int32_t pieces = n == batch && aligned < grid && sc.cta_first[aligned] == n ? aligned : grid;
  if (pieces < grid && static_cast<int64_t>(pieces) * 20 < static_cast<int64_t>(grid) * 19) {
    why << "only " << pieces << " of " << grid << " pieces used";
    return why.str();
  }
  const int64_t quota = (total_cost + pieces - 1) / pieces + overhead;
  for (int32_t k = 0; k < pieces; ++k) {
    const int32_t b = sc.cta_first[k], e = sc.cta_first[k + 1];
    if (b > e) {
      why << "cta_first decreases at piece " << k << ": " << b << " > " << e;
      return why.str();
    }
    int64_t cost = 0;
    for (int32_t j = b; j < e; ++j) {
      cost += overhead + (sc.entries[j].end - sc.entries[j].begin + kBlock - 1) / kBlock;
      if (j > b && sc.entries[j].seq == sc.entries[j - 1].seq) {
        why << "piece " << k << " holds two splits of sequence " << sc.entries[j].seq;
        return why.str();
      }
    }
    if (cost > quota) {
      why << "piece " << k << " costs " << cost << " > quota " << quota << " (total " << total_cost << ", grid "
          << grid << ")";
      return why.str();
    }
    if (b == e && total_cost >= static_cast<int64_t>(overhead + 1) * pieces) {
      why << "piece " << k << " is empty though the total cost " << total_cost << " >= (overhead + 1) x " << pieces;
      return why.str();
    }
  }
  return "";
}

// A fresh seed per run; MLA_TEST_SEED=<n> replays one (tests print theirs on failure).
inline uint64_t fresh_seed() {
  if (const char* s = std::getenv("MLA_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

// A random case: grid, capacity, batch (mostly <= 300, sometimes up to 8192) and one of five
// length shapes (uniform, short with many zeros, a few at capacity, out of range, whole blocks).
struct Case {
  std::vector<int32_t> lens;
  int32_t capacity = 0, grid = 0;
  int shape = 0;
};
inline Case random_case(std::mt19937_64& rng) {
  auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  static constexpr int32_t kGrids[] = {1, 2, 3, 33, 66, 100, 132, 264, 1000};
  Case c;
  c.grid = uniform(0, 3) == 0 ? static_cast<int32_t>(uniform(1, 300)) : kGrids[uniform(0, 8)];
  c.capacity = 64 * static_cast<int32_t>(uniform(1, 4096)) - static_cast<int32_t>(uniform(0, 63));
  const int64_t pick = uniform(0, 9);
  const int64_t batch = pick == 0 ? uniform(1, 4) : pick < 8 ? uniform(1, 300) : uniform(1, 8192);
  c.shape = static_cast<int>(uniform(0, 4));
  c.lens.resize(static_cast<size_t>(batch));
  for (int32_t& l : c.lens) {
    switch (c.shape) {
      case 0: l = static_cast<int32_t>(uniform(0, c.capacity)); break;
      case 1: l = uniform(0, 2) == 0 ? 0 : static_cast<int32_t>(uniform(0, 200)); break;
      case 2: l = uniform(0, 50) == 0 ? c.capacity : static_cast<int32_t>(uniform(0, 4000)); break;
      case 3: l = static_cast<int32_t>(uniform(-100, int64_t{c.capacity} + 100)); break;
      default: l = static_cast<int32_t>(64 * uniform(0, 64)); break;
    }
  }
  return c;
}

}  // namespace mla::testing::hopper_schedule
