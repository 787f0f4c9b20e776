// The sim_tpu backend: factory, device (host memory), plan (tilings that fit, per strategy) and
// schedule (the simulated step for one set of lengths).
#include <algorithm>
#include <memory>
#include <optional>
#include <sstream>

#include "executor.hpp"
#include "mla/error.hpp"
#include "mla/host_device.hpp"
#include "mla/registry.hpp"
#include "mla/validate.hpp"
#include "partition.hpp"
#include "report.hpp"
#include "sim_config.hpp"
#include "tile_math.hpp"
#include "step_model.hpp"
#include "trace_writer.hpp"

namespace mla {
namespace sim_tpu {
namespace {

class SimSchedule final : public Schedule {
 public:
  // exec_work: the partition the functional run computes with, when it is not model.work (a
  // context-parallel model describes one shard; the run computes the whole, merged result).
  SimSchedule(std::vector<int32_t> lens, StepModel model, std::string report, std::optional<StepWork> exec_work = {})
      : lens_(std::move(lens)), model_(std::move(model)), report_(std::move(report)), exec_work_(std::move(exec_work)) {}
  [[nodiscard]] std::string describe() const override {
    std::ostringstream os;
    os << "sim_tpu: " << lens_.size() << " sequences, " << strategy_name(model_.work.strategy) << " partition on "
       << model_.work.chips.size() << " chips, simulated " << model_.latency_ns * 1e-3 << " us";
    return os.str();
  }
  [[nodiscard]] bool matches(const int32_t* lens) const { return std::equal(lens_.begin(), lens_.end(), lens); }
  [[nodiscard]] const StepModel& model() const { return model_; }
  [[nodiscard]] const std::string& report() const { return report_; }
  [[nodiscard]] const StepWork& exec_work() const { return exec_work_ ? *exec_work_ : model_.work; }
  PartialBuffers& partials() const { return partials_; }

 private:
  std::vector<int32_t> lens_;
  StepModel model_;
  std::string report_;
  std::optional<StepWork> exec_work_;
  mutable PartialBuffers partials_;  // grown on the first functional run, reused by later runs
};

class SimPlan final : public Plan {
 public:
  // exchange: the device's context_parallel.exchange, which the context-parallel estimate models.
  SimPlan(const Problem& problem, SimConfig config, std::vector<StrategyFit> fits, ContextExchange exchange)
      : Plan(problem), config_(std::move(config)), fits_(std::move(fits)), exchange_(exchange) {}

  [[nodiscard]] std::string backend_name() const override { return "sim_tpu"; }
  [[nodiscard]] std::string kernel_name() const override {
    return kernel_label(problem(), config_.kernel.partition, config_.kernel.double_buffer);
  }
  [[nodiscard]] std::string explain() const override {
    std::ostringstream os;
    os << "simulated NPU: " << config_.chip.cores << " cores per chip, " << config_.topology.cards << " cards x "
       << config_.topology.chips_per_card << " chips, tensor parallel " << config_.topology.tensor_parallel << "; partition "
       << config_.kernel.partition << (config_.kernel.partition == "auto" ? " (chosen per step by simulating each)" : "")
       << "; functional tile math on the host's " << tile_math_for_this_cpu().target << " SIMD target";
    for (const StrategyFit& f : fits_) {
      os << "\n  " << strategy_name(f.strategy) << ": ";
      if (f.tiling)
        os << "kv tile " << f.tiling->kv_tile_tokens << ", L2 chunk " << f.tiling->l2_chunk_tokens << ", LMEM "
           << f.tiling->lmem_bytes_used << " bytes, L2 " << f.tiling->l2_bytes_used << " bytes"
           << (problem().variant == Variant::absorb ? (f.tiling->weights_resident ? ", weights resident" : ", weights streamed") : "");
      else
        os << "does not fit: " << f.refusal;
    }
    return os.str();
  }
  [[nodiscard]] size_t workspace_bytes() const override {
    // Split-KV partials: at most one slice per core for every sequence, rows of one card's heads.
    for (const StrategyFit& f : fits_)
      if (f.strategy == Strategy::sequence && f.tiling) {
        const int64_t rows = heads_of_rank(problem(), config_.topology, 0).count * problem().s_q;
        return static_cast<size_t>(problem().batch * config_.chip.cores * config_.topology.tensor_parallel * rows *
                                   (problem().d_v() + 1) * 4);
      }
    return 0;
  }

 protected:
  std::unique_ptr<Schedule> do_schedule(const TensorView& seqlens, void*) const override {
    const int32_t* lens = seqlens.as<const int32_t>();
    validate_seqlens(problem(), lens);
    std::vector<int32_t> all(lens, lens + problem().batch);
    if (config_.topology.context_parallel.ranks == 1) {
      StepModel model = model_step(problem(), config_, fits_, lens);
      std::string report = make_report(problem(), config_, model, config_.kernel.timing_only);
      return std::make_unique<SimSchedule>(std::move(all), std::move(model), std::move(report));
    }
    StepModel model = model_context_parallel_step(problem(), config_, fits_, lens, exchange_);
    std::string report = make_report(problem(), config_, model, config_.kernel.timing_only);
    std::optional<StepWork> exec;
    if (!config_.kernel.timing_only)  // the whole problem, partitioned as the shard's step chose
      for (const StrategyFit& f : fits_)
        if (f.strategy == model.work.strategy) exec = partition(problem(), config_, f, lens);
    return std::make_unique<SimSchedule>(std::move(all), std::move(model), std::move(report), std::move(exec));
  }

  RunResult do_run(const RunArgs& args, const Schedule& schedule, void*) const override {
    auto* sim = dynamic_cast<const SimSchedule*>(&schedule);
    if (!sim) fail(ErrorCode::invalid_argument, "schedule: expected one made by a sim_tpu plan, got another backend's");
    if (!sim->matches(args.cache_seqlens.as<const int32_t>()))
      fail(ErrorCode::invalid_argument,
           "schedule: made for other cache_seqlens than the ones passed to run (call schedule() again for this step)");
    if (!config_.kernel.timing_only) execute_step(problem(), args, sim->exec_work(), sim->partials());
    if (!config_.trace_file.empty()) write_trace(config_.trace_file, sim->model());
    RunResult r;
    r.backend = backend_name();
    r.kernel = kernel_label(problem(), strategy_name(sim->model().work.strategy), config_.kernel.double_buffer);
    r.seconds = sim->model().latency_ns * 1e-9;
    r.simulated = true;
    r.report_json = sim->report();
    return r;
  }

 private:
  SimConfig config_;
  std::vector<StrategyFit> fits_;
  ContextExchange exchange_;
};

class SimDevice final : public HostDevice {
 public:
  SimDevice(SimConfig config, std::string name) : config_(std::move(config)), name_(std::move(name)) {}
  [[nodiscard]] std::string backend_name() const override { return "sim_tpu"; }
  [[nodiscard]] std::string name() const override { return name_; }

 protected:
  std::unique_ptr<Plan> do_plan(const Problem& problem) const override {
    std::vector<StrategyFit> fits;
    if (config_.kernel.partition == "auto") {
      for (Strategy s : {Strategy::heads, Strategy::batch, Strategy::sequence}) fits.push_back(fit_strategy(problem, config_, s));
      if (std::none_of(fits.begin(), fits.end(), [](const StrategyFit& f) { return f.tiling.has_value(); })) {
        std::string reasons;
        for (const auto& f : fits) reasons += (reasons.empty() ? "" : "; ") + f.refusal;
        fail(ErrorCode::out_of_memory, "sim_tpu: no partition fits this problem: " + reasons);
      }
    } else {
      const Strategy s = config_.kernel.partition == "heads" ? Strategy::heads
                         : config_.kernel.partition == "batch" ? Strategy::batch
                                                               : Strategy::sequence;
      fits.push_back(fit_strategy(problem, config_, s));
      if (!fits.back().tiling) fail(ErrorCode::out_of_memory, "sim_tpu: " + fits.back().refusal);
    }
    return std::make_unique<SimPlan>(problem, config_, std::move(fits), context_exchange());
  }

 private:
  SimConfig config_;
  std::string name_;
};

}  // namespace
}  // namespace sim_tpu

BackendFactory make_sim_tpu_backend_factory() {
  BackendFactory f;
  f.name = "sim_tpu";
  f.description = "simulated SC11 / Ascend-style NPU: real outputs tile by tile, event-driven SDMA/GDMA/BDC timing";
  f.simulated = true;
  f.availability = [] { return Availability{true, "host simulator"}; };
  f.parse_config = [](ConfigReader& root) -> std::any { return sim_tpu::parse_sim_config(root); };
  f.open = [](const std::any& parsed, const std::string& name) -> std::unique_ptr<Device> {
    return std::make_unique<sim_tpu::SimDevice>(std::any_cast<sim_tpu::SimConfig>(parsed), name);
  };
  return f;
}

}  // namespace mla
