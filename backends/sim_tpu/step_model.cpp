#include "step_model.hpp"

#include <algorithm>
#include <map>
#include <sstream>

#include "lowering.hpp"
#include "mla/dtype.hpp"
#include "mla/error.hpp"

namespace mla::sim_tpu {

namespace {

// DDR holds the chip's share of the paged cache (whole pages) and, in absorb, the weights.
void check_ddr_capacity(const Problem& p, const SimConfig& c, const ChipWork& chip, const int32_t* lens) {
  int64_t pages = 0;
  for (int32_t s : chip.sequences) pages += (lens[s] + p.page_size - 1) / p.page_size;
  int64_t bytes = pages * p.page_size * p.h_kv * kv_token_bytes(p.kv_format, p.d_c, p.d_r);
  if (p.variant == Variant::absorb)
    bytes += chip.head_count * (p.d_nope * p.d_c + p.d_c * p.d_vh) * static_cast<int64_t>(dtype_size(p.dtype));
  if (bytes > c.chip.ddr.bytes)
    fail(ErrorCode::out_of_memory, "sim_tpu: card " + std::to_string(chip.card) + " chip " + std::to_string(chip.chip) +
                                       ": DDR holds " + std::to_string(c.chip.ddr.bytes) + " bytes, its KV pages and weights need " +
                                       std::to_string(bytes));
}

StepModel simulate_strategy(const Problem& p, const SimConfig& c, const StrategyFit& fit, const int32_t* lens) {
  StepModel m;
  m.work = partition(p, c, fit, lens);
  // Chips with the same head count and the same sequences run the same program: simulate one.
  std::map<std::pair<int32_t, int32_t>, size_t> seen;
  for (size_t i = 0; i < m.work.chips.size(); ++i) {
    const ChipWork& chip = m.work.chips[i];
    check_ddr_capacity(p, c, chip, lens);
    auto key = std::make_pair(chip.head_count, chip.dp_slot);
    auto it = seen.find(key);
    if (it != seen.end()) {
      ++m.chips[it->second].copies;
      continue;
    }
    seen[key] = m.chips.size();
    SimulatedChip sim;
    sim.work_index = i;
    sim.program = lower_chip(p, c, m.work, chip);
    sim.timeline = simulate(sim.program);
    m.latency_ns = std::max(m.latency_ns, sim.timeline.makespan_ns);
    m.chips.push_back(std::move(sim));
  }
  return m;
}

std::string ms(double ns) {
  std::ostringstream os;
  os.precision(4);
  os << ns * 1e-6 << " ms";
  return os.str();
}

}  // namespace

StepModel model_step(const Problem& p, const SimConfig& c, const std::vector<StrategyFit>& fits, const int32_t* lens) {
  StepModel best;
  bool have = false;
  std::vector<CandidateResult> candidates;
  for (const StrategyFit& fit : fits) {
    CandidateResult r;
    r.strategy = fit.strategy;
    if (!fit.tiling) {
      r.refusal = fit.refusal;
      candidates.push_back(r);
      continue;
    }
    StepModel m = simulate_strategy(p, c, fit, lens);
    r.latency_ns = m.latency_ns;
    candidates.push_back(r);
    if (!have || m.latency_ns < best.latency_ns) {
      best = std::move(m);
      have = true;
    }
  }
  if (!have) {
    std::string reasons;
    for (const auto& r : candidates) reasons += (reasons.empty() ? "" : "; ") + r.refusal;
    fail(ErrorCode::out_of_memory, "sim_tpu: no partition fits: " + reasons);
  }
  best.candidates = candidates;
  std::ostringstream why;
  if (fits.size() == 1) {
    why << "partition = " << strategy_name(best.work.strategy) << " (from the config)";
  } else {
    why << "auto: simulated every partition, kept the fastest:";
    for (const auto& r : candidates) {
      why << ' ' << strategy_name(r.strategy) << ' ';
      if (r.latency_ns >= 0) why << ms(r.latency_ns);
      else why << "(does not fit: " << r.refusal << ')';
      if (&r != &candidates.back()) why << ',';
    }
  }
  best.why = why.str();
  return best;
}

StepModel model_context_parallel_step(const Problem& p, const SimConfig& c, const std::vector<StrategyFit>& fits,
                                      const int32_t* lens, ContextExchange exchange) {
  const ContextParallel& cp = c.topology.context_parallel;
  std::vector<int32_t> shard(static_cast<size_t>(p.batch));
  for (int64_t i = 0; i < p.batch; ++i) {
    const int64_t pages = (lens[i] + p.page_size - 1) / p.page_size;
    const int64_t largest = (pages + cp.ranks - 1) / cp.ranks;  // rank r holds pages [r P / n, (r + 1) P / n)
    shard[static_cast<size_t>(i)] = static_cast<int32_t>(std::min<int64_t>(lens[i], largest * p.page_size));
  }
  StepModel m = model_step(p, c, fits, shard.data());
  ContextParallelStep& x = m.context_parallel;
  x.ranks = cp.ranks;
  x.exchange = exchange;
  x.shard_ns = m.latency_ns;
  const int64_t rows = p.batch * p.s_q * p.h_q;
  const double n = static_cast<double>(cp.ranks), hop_ns = cp.link_latency_us * 1e3;
  // A ring collective on the link: GB/s = bytes per ns.
  auto ring_all_reduce_ns = [&](double bytes) { return 2 * (n - 1) * (hop_ns + bytes / n / cp.link_bandwidth_gbps); };
  const double lanes = static_cast<double>(c.topology.cards * c.topology.chips_per_card * c.chip.cores) * c.chip.core.vector_gops;
  if (exchange == ContextExchange::all_gather) {
    x.bytes_per_rank = rows * (p.d_v() * static_cast<int64_t>(dtype_size(p.dtype)) + 4);
    // Ring all-gather: ranks - 1 hops, each moving one rank's partial.
    x.exchange_ns = (n - 1) * (hop_ns + static_cast<double>(x.bytes_per_rank) / cp.link_bandwidth_gbps);
    // Every rank merges every row: ranks partials of d_v + 2 values per row, on all its cores.
    x.merge_ns = static_cast<double>(rows * cp.ranks * (p.d_v() + 2)) * kVectorOpsPerMerge / lanes;
  } else {
    // A max all-reduce of the LSEs, then a sum all-reduce of fp32 [out x w | w]; each a ring
    // reduce-scatter + all-gather (2 (ranks - 1) hops of 1 / ranks of the buffer).
    const int64_t sums = rows * (p.d_v() + 1) * 4, keys = rows * 4;
    x.bytes_per_rank = sums + keys;
    x.exchange_ns = ring_all_reduce_ns(static_cast<double>(keys)) + ring_all_reduce_ns(static_cast<double>(sums));
    // Locally: the partial rescaled into fp32 before the sum, divided by the weight after it.
    x.merge_ns = static_cast<double>(rows * 2 * (p.d_v() + 1)) * kVectorOpsPerMerge / lanes;
  }
  m.latency_ns = x.shard_ns + x.exchange_ns + x.merge_ns;
  std::ostringstream why;
  why << "; context parallel over " << cp.ranks << " ranks: largest shard " << ms(x.shard_ns) << ", exchange "
      << ms(x.exchange_ns) << " (" << context_exchange_name(exchange) << ", " << x.bytes_per_rank << " bytes per rank, "
      << (exchange == ContextExchange::all_gather ? cp.ranks - 1 : 4 * (cp.ranks - 1)) << " hops), merge "
      << ms(x.merge_ns);
  m.why += why.str();
  return m;
}

}  // namespace mla::sim_tpu
