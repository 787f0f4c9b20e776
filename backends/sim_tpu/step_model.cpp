#include "step_model.hpp"

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

}  // namespace mla::sim_tpu
