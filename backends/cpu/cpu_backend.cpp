// The cpu backend: the factory, the device (host memory) and the plan.
#include <algorithm>
#include <memory>
#include <sstream>

#include <tbb/info.h>

#include "cpu_config.hpp"
#include "task_kernel.hpp"
#include "fast_decode.hpp"
#include "mla/error.hpp"
#include "mla/host_device.hpp"
#include "mla/host_tensor.hpp"
#include "mla/reference.hpp"
#include "mla/registry.hpp"
#include "mla/validate.hpp"

namespace mla {
namespace cpu {
namespace {

class CpuSchedule final : public Schedule {
 public:
  explicit CpuSchedule(SplitPlan split) : split_(std::move(split)) {}
  [[nodiscard]] std::string describe() const override { return split_.describe(); }
  [[nodiscard]] const SplitPlan& split() const { return split_; }
  Workspace& workspace() const { return workspace_; }

 private:
  SplitPlan split_;
  mutable Workspace workspace_;  // grown on first use, reused by later runs of the step
};

class CpuPlan final : public Plan {
 public:
  CpuPlan(const Problem& problem, CpuConfig config, int threads, bool use_avx512)
      : Plan(problem), config_(std::move(config)), threads_(threads), use_avx512_(use_avx512) {}

  [[nodiscard]] std::string backend_name() const override { return "cpu"; }
  [[nodiscard]] std::string kernel_name() const override {
    if (config_.path == "reference") return "cpu_reference_f64";
    return use_avx512_ ? "cpu_flash_decode_avx512bf16" : "cpu_flash_decode_portable";
  }
  [[nodiscard]] std::string explain() const override {
    std::ostringstream os;
    if (config_.path == "reference") {
      os << "config cpu.path = reference: float64 loops";
    } else {
      os << "flash decoding over " << config_.kv_tile_tokens << "-token KV tiles on " << threads_ << " threads; ";
      if (use_avx512_) os << "AVX-512 BF16 dot products (bf16 inputs and the CPU has avx512_bf16)";
      else if (problem().dtype != DType::bf16 || problem().kv.dtype != DType::bf16)
        os << "portable fp32 path (dtype is not bf16)";
      else if (config_.isa == "portable") os << "portable fp32 path (config cpu.isa = portable)";
      else if (problem().d_qk() % 2 != 0 || problem().d_v() % 64 != 0)
        os << "portable fp32 path (AVX-512 kernel needs even d_qk and d_v a multiple of 64)";
      else os << "portable fp32 path (this CPU lacks avx512_bf16)";
    }
    return os.str();
  }
  [[nodiscard]] size_t workspace_bytes() const override {
    return config_.path == "reference" ? 0 : fast_workspace_bytes(problem(), config_, threads_);
  }

 protected:
  std::unique_ptr<Schedule> do_schedule(const TensorView& seqlens, void*) const override {
    validate_seqlens(problem(), seqlens.as<const int32_t>());
    return std::make_unique<CpuSchedule>(plan_splits(problem(), seqlens.as<const int32_t>(), config_, threads_));
  }

  RunResult do_run(const RunArgs& args, const Schedule& schedule, void*) const override {
    auto* cpu_schedule = dynamic_cast<const CpuSchedule*>(&schedule);
    if (!cpu_schedule) fail(ErrorCode::invalid_argument, "schedule: it was not made by a cpu plan");
    if (!cpu_schedule->split().matches(args.cache_seqlens.as<const int32_t>()))
      fail(ErrorCode::invalid_argument,
           "schedule: made for other cache_seqlens than the ones passed to run (call schedule() again for this step)");
    if (config_.path == "reference") {
      run_reference(args);
    } else {
      fast_decode(problem(), args, cpu_schedule->split(), cpu_schedule->workspace(), config_, threads_, use_avx512_);
    }
    RunResult r;
    r.backend = backend_name();
    r.kernel = kernel_name();
    return r;
  }

 private:
  void run_reference(const RunArgs& args) const {
    ReferenceOutput ref = reference_decode(problem(), args);
    const TensorView& out = args.out;
    const int64_t w = out.shape[3];
    for (int64_t i = 0; i < out.shape[0]; ++i)
      for (int64_t t = 0; t < out.shape[1]; ++t)
        for (int64_t h = 0; h < out.shape[2]; ++h)
          for (int64_t d = 0; d < w; ++d)
            store_element(out, i * out.strides[0] + t * out.strides[1] + h * out.strides[2] + d,
                          ref.out[static_cast<size_t>(((i * out.shape[1] + t) * out.shape[2] + h) * w + d)]);
    const TensorView& lse = args.lse;
    for (int64_t i = 0; i < lse.shape[0]; ++i)
      for (int64_t h = 0; h < lse.shape[1]; ++h)
        for (int64_t t = 0; t < lse.shape[2]; ++t)
          lse.as<float>()[i * lse.strides[0] + h * lse.strides[1] + t * lse.strides[2]] =
              static_cast<float>(ref.lse[static_cast<size_t>((i * lse.shape[1] + h) * lse.shape[2] + t)]);
  }

  CpuConfig config_;
  int threads_;
  bool use_avx512_;
};

class CpuDevice final : public HostDevice {
 public:
  CpuDevice(CpuConfig config, std::string name) : config_(std::move(config)), name_(std::move(name)) {
    int hw = tbb::info::default_concurrency();
    threads_ = config_.threads > 0 ? static_cast<int>(config_.threads) : std::max(1, hw);
  }
  [[nodiscard]] std::string backend_name() const override { return "cpu"; }
  [[nodiscard]] std::string name() const override { return name_; }

 protected:
  std::unique_ptr<Plan> do_plan(const Problem& problem) const override {
    if (problem.kv.scaling != KvScaling::none)
      fail(ErrorCode::unsupported, "cpu: quantized KV formats (" + problem.kv.describe() + ") are not implemented yet");
    if (problem.kv.dtype != problem.dtype)
      fail(ErrorCode::unsupported, std::string("cpu: kv dtype ") + dtype_name(problem.kv.dtype) +
                                       " must equal the query dtype " + dtype_name(problem.dtype));
    // The AVX-512 kernel packs head dimensions in pairs and values in 64-wide chunks.
    bool avx = config_.path == "fast" && config_.isa != "portable" && problem.dtype == DType::bf16 &&
               problem.d_qk() % 2 == 0 && problem.d_v() % 64 == 0 && cpu_has_avx512_bf16();
    if (config_.isa == "avx512_bf16" && !cpu_has_avx512_bf16())
      fail(ErrorCode::unsupported, "cpu: config cpu.isa = avx512_bf16 but this CPU lacks avx512_bf16");
    return std::make_unique<CpuPlan>(problem, config_, threads_, avx);
  }

 private:
  CpuConfig config_;
  std::string name_;
  int threads_ = 1;
};

}  // namespace
}  // namespace cpu

BackendFactory make_cpu_backend_factory() {
  BackendFactory f;
  f.name = "cpu";
  f.description = "oneTBB CPU backend: float64 reference and flash-decoding fast path";
  f.availability = [] {
    return Availability{true, std::to_string(tbb::info::default_concurrency()) + " threads" +
                                  (cpu::cpu_has_avx512_bf16() ? ", avx512_bf16" : ", no avx512_bf16 (portable path)")};
  };
  f.parse_config = [](ConfigReader& root) -> std::any { return cpu::parse_cpu_config(root); };
  f.open = [](const std::any& parsed, const std::string& name) -> std::unique_ptr<Device> {
    return std::make_unique<cpu::CpuDevice>(std::any_cast<cpu::CpuConfig>(parsed), name);
  };
  return f;
}

}  // namespace mla
