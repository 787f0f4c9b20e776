#include "timing_engine.hpp"

#include <algorithm>
#include <limits>
#include <queue>

#include "mla/error.hpp"

namespace mla::sim_tpu {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Flow {
  int32_t cmd = 0;
  double remaining = 0;
  double cap = 0;
  double rate = 0;
  bool ddr = false, l2 = false;
};

bool touches(const Command& c, MemoryKind m) { return c.src == m || c.dst == m; }

class Engine {
 public:
  explicit Engine(const ChipProgram& p) : p_(p) {
    const size_t n = p.commands.size(), lanes = p.lanes.size();
    t_.start_ns.assign(n, 0);
    t_.end_ns.assign(n, 0);
    t_.lane_busy_ns.assign(lanes, 0);
    queues_.resize(lanes);
    for (size_t i = 0; i < n; ++i) queues_[static_cast<size_t>(p.commands[i].lane)].push_back(static_cast<int32_t>(i));
    next_.assign(lanes, 0);
    busy_.assign(lanes, false);
    waiting_.resize(n);
    dependents_begin_.assign(n + 1, 0);
    for (int32_t d : p.deps) ++dependents_begin_[static_cast<size_t>(d) + 1];
    for (size_t i = 0; i < n; ++i) dependents_begin_[i + 1] += dependents_begin_[i];
    dependents_.resize(p.deps.size());
    std::vector<int32_t> fill(dependents_begin_.begin(), dependents_begin_.end() - 1);
    for (size_t i = 0; i < n; ++i) {
      const Command& c = p.commands[i];
      waiting_[i] = c.dep_end - c.dep_begin;
      for (int32_t k = c.dep_begin; k < c.dep_end; ++k)
        dependents_[static_cast<size_t>(fill[static_cast<size_t>(p.deps[static_cast<size_t>(k)])]++)] = static_cast<int32_t>(i);
    }
  }

  Timeline run() {
    const size_t n = p_.commands.size();
    for (size_t lane = 0; lane < queues_.size(); ++lane) try_start(lane);
    size_t done = 0;
    while (done < n) {
      double next = events_.empty() ? kInf : events_.top().time;
      for (const Flow& f : flows_)
        if (f.rate > 0) next = std::min(next, now_ + f.remaining / f.rate);  // starved ones wait
      if (next == kInf)
        fail(ErrorCode::internal, "sim_tpu timing: " + std::to_string(n - done) +
                                      " commands can never start (a dependency cycle in the lowering)");
      const double dt = next - now_;
      now_ = next;
      std::vector<int32_t> finished;
      for (size_t i = 0; i < flows_.size();) {
        Flow& f = flows_[i];
        f.remaining -= f.rate * dt;
        if (f.remaining <= 1e-3 + 1e-12 * p_.commands[static_cast<size_t>(f.cmd)].bytes) {
          finished.push_back(f.cmd);
          flows_.erase(flows_.begin() + static_cast<std::ptrdiff_t>(i));  // keeps program order
          rates_dirty_ = true;
        } else {
          ++i;
        }
      }
      while (!events_.empty() && events_.top().time <= now_ + 1e-9) {
        Event e = events_.top();
        events_.pop();
        if (e.begins_transfer) begin_transfer(e.cmd, finished);
        else finished.push_back(e.cmd);
      }
      for (int32_t cmd : finished) {
        complete(cmd);
        ++done;
      }
      if (rates_dirty_) share_bandwidth();
    }
    return std::move(t_);
  }

 private:
  struct Event {
    double time;
    int32_t cmd;
    bool begins_transfer;
    bool operator>(const Event& o) const { return time > o.time || (time == o.time && cmd > o.cmd); }
  };

  void try_start(size_t lane) {
    if (busy_[lane] || next_[lane] >= queues_[lane].size()) return;
    const int32_t cmd = queues_[lane][next_[lane]];
    if (waiting_[static_cast<size_t>(cmd)] > 0) return;
    busy_[lane] = true;
    t_.start_ns[static_cast<size_t>(cmd)] = now_;
    const Command& c = p_.commands[static_cast<size_t>(cmd)];
    const bool dma = p_.lanes[lane].kind != EngineKind::bdc && c.bytes > 0;
    events_.push({now_ + c.fixed_ns, cmd, dma});
  }

  void begin_transfer(int32_t cmd, std::vector<int32_t>& finished) {
    const Command& c = p_.commands[static_cast<size_t>(cmd)];
    Flow f;
    f.cmd = cmd;
    f.remaining = c.bytes;
    f.cap = p_.lanes[static_cast<size_t>(c.lane)].bytes_per_ns;
    f.ddr = touches(c, MemoryKind::ddr);
    f.l2 = touches(c, MemoryKind::l2);
    if (f.remaining <= 0) {
      finished.push_back(cmd);
      return;
    }
    // Keep flows_ in program order (the arbitration priority); the few in flight make a linear
    // insert cheap.
    flows_.insert(std::upper_bound(flows_.begin(), flows_.end(), f,
                                   [](const Flow& a, const Flow& b) { return a.cmd < b.cmd; }),
                  f);
    rates_dirty_ = true;
  }

  void complete(int32_t cmd) {
    const Command& c = p_.commands[static_cast<size_t>(cmd)];
    const size_t lane = static_cast<size_t>(c.lane);
    t_.end_ns[static_cast<size_t>(cmd)] = now_;
    t_.lane_busy_ns[lane] += now_ - t_.start_ns[static_cast<size_t>(cmd)];
    t_.makespan_ns = std::max(t_.makespan_ns, now_);
    busy_[lane] = false;
    ++next_[lane];
    for (int32_t k = dependents_begin_[static_cast<size_t>(cmd)]; k < dependents_begin_[static_cast<size_t>(cmd) + 1]; ++k) {
      const int32_t d = dependents_[static_cast<size_t>(k)];
      if (--waiting_[static_cast<size_t>(d)] == 0) try_start(static_cast<size_t>(p_.commands[static_cast<size_t>(d)].lane));
    }
    try_start(lane);
  }

  // Oldest-first (program-order) arbitration, as a priority memory controller does it: the
  // transfers in flight are served in the order the lowering issued them (command index, kept
  // sorted in flows_). Each takes all the bandwidth it can use -- its engine's cap, limited by
  // what the older transfers left in DDR and L2 -- and younger ones get only the rest. So a
  // prefetch (a gather or query load issued ahead for a later item) never slows the demand
  // transfers issued before it; it uses the bandwidth they leave idle. O(transfers in flight).
  void share_bandwidth() {
    rates_dirty_ = false;
    double ddr_left = p_.ddr_bytes_per_ns, l2_left = p_.l2_bytes_per_ns;
    for (Flow& f : flows_) {
      double rate = f.cap;
      if (f.ddr) rate = std::min(rate, ddr_left);
      if (f.l2) rate = std::min(rate, l2_left);
      // Below a byte per second a transfer is starved: it waits until an older one ends.
      f.rate = rate > 1e-9 ? rate : 0;
      if (f.ddr) ddr_left = std::max(ddr_left - f.rate, 0.0);
      if (f.l2) l2_left = std::max(l2_left - f.rate, 0.0);
    }
  }

  const ChipProgram& p_;
  Timeline t_;
  std::vector<std::vector<int32_t>> queues_;
  std::vector<size_t> next_;
  std::vector<bool> busy_;
  std::vector<int32_t> waiting_;
  std::vector<int32_t> dependents_begin_, dependents_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::vector<Flow> flows_;
  bool rates_dirty_ = false;
  double now_ = 0;
};

}  // namespace

Timeline simulate(const ChipProgram& program) { return Engine(program).run(); }

}  // namespace mla::sim_tpu
