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
  bool frozen = false;
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
      for (const Flow& f : flows_) next = std::min(next, now_ + f.remaining / f.rate);
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
          flows_[i] = flows_.back();
          flows_.pop_back();
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
    flows_.push_back(f);
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

  // Max-min fair shares: raise every unfrozen transfer's rate together until it meets its
  // engine cap or a memory it uses runs out of bandwidth; freeze those; repeat.
  void share_bandwidth() {
    rates_dirty_ = false;
    double ddr_left = p_.ddr_bytes_per_ns, l2_left = p_.l2_bytes_per_ns;
    for (Flow& f : flows_) f.frozen = false;
    size_t unfrozen = flows_.size();
    while (unfrozen > 0) {
      int ddr_n = 0, l2_n = 0;
      double level = kInf;
      for (const Flow& f : flows_) {
        if (f.frozen) continue;
        ddr_n += f.ddr;
        l2_n += f.l2;
        level = std::min(level, f.cap);
      }
      const double ddr_share = ddr_n ? ddr_left / ddr_n : kInf, l2_share = l2_n ? l2_left / l2_n : kInf;
      level = std::min({level, ddr_share, l2_share});
      const double edge = level * (1 + 1e-12);
      for (Flow& f : flows_) {
        if (f.frozen) continue;
        if (f.cap <= edge || (f.ddr && ddr_share <= edge) || (f.l2 && l2_share <= edge)) {
          f.frozen = true;
          f.rate = std::max(level, 1e-12);
          --unfrozen;
        }
      }
      // Subtract what the newly frozen transfers take (recomputed from scratch: few transfers).
      ddr_left = p_.ddr_bytes_per_ns;
      l2_left = p_.l2_bytes_per_ns;
      for (const Flow& f : flows_) {
        if (!f.frozen) continue;
        if (f.ddr) ddr_left -= f.rate;
        if (f.l2) l2_left -= f.rate;
      }
      ddr_left = std::max(ddr_left, 0.0);
      l2_left = std::max(l2_left, 0.0);
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
