// The cpu backend: the factory, the device (host memory) and the plan.
#include <algorithm>
#include <memory>
#include <sstream>

#include <tbb/info.h>

#include "cpu_config.hpp"
#include "fast_decode.hpp"
#include "simd_targets.hpp"
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

// How the fast path reads the cache's format, for explain().
std::string kv_format_note(const Problem& p) {
  const std::string name = kv_format_name(p.kv_format);
  switch (p.kv().scale) {
    case KvScaleKind::none:
      return p.kv_format == plain_kv_format(p.dtype) ? std::string() : name + " cache widened to fp32 per KV tile";
    case KvScaleKind::per_tensor:
    case KvScaleKind::per_channel:
      return name + " cache dequantized per KV tile without its " +
             (p.kv().scale == KvScaleKind::per_tensor ? "per-tensor" : "per-channel") +
             " kv_scale, which is folded into q (q_c * s_c) and out (out_c * s_c)";
    case KvScaleKind::in_token: return name + " cache dequantized per KV tile with its in-token scales";
  }
  return {};
}

// The task kernel a plan runs, its name in results and why it was chosen.
struct KernelChoice {
  TaskKernel run = nullptr;
  std::string name;
  std::string why;
};

class CpuPlan final : public Plan {
 public:
  CpuPlan(const Problem& problem, CpuConfig config, int threads, KernelChoice kernel)
      : Plan(problem), config_(std::move(config)), threads_(threads), kernel_(std::move(kernel)) {}

  [[nodiscard]] std::string backend_name() const override { return "cpu"; }
  [[nodiscard]] std::string kernel_name() const override {
    return config_.path == "reference" ? "cpu_reference_f64" : kernel_.name;
  }
  [[nodiscard]] std::string explain() const override {
    std::ostringstream os;
    if (config_.path == "reference") os << "config cpu.path = reference: float64 loops";
    else os << "flash decoding over " << config_.kv_tile_tokens << "-token KV tiles on " << threads_ << " threads; " << kernel_.why;
    if (config_.path != "reference" && !kv_format_note(problem()).empty()) os << "; " << kv_format_note(problem());
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
      fast_decode(problem(), args, cpu_schedule->split(), cpu_schedule->workspace(), config_, threads_, kernel_.run);
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
  KernelChoice kernel_;
};

KernelChoice highway_choice(const SimdKernel& k, const std::string& why) {
  return {k.run, "cpu_flash_decode_hwy_" + k.target, "Highway kernel, " + k.target + " target (" + why + ")"};
}

// Why the AVX-512 BF16 kernel cannot run `p`; empty when it can. It multiplies bf16 pairs
// straight from the query rows and the cache rows, so both must hold bf16.
std::string bf16_kernel_mismatch(const Problem& p) {
  if (p.kv_format != KvFormat::bf16 && !is_quantized(p.kv_format))
    return std::string("the AVX-512 BF16 kernel reads bf16 and 8-bit caches; the ") + kv_format_name(p.kv_format) +
           " cache is widened to fp32 per KV tile";
  if (p.dtype != DType::bf16) return "the AVX-512 BF16 kernel needs bf16 queries";
  if (p.d_qk() % 2 != 0 || p.d_v() % 64 != 0) return "the AVX-512 BF16 kernel needs even d_qk and d_v a multiple of 64";
  if (is_quantized(p.kv_format) && (p.d_qk() % 32 != 0 || p.d_c % 32 != 0))
    return "the AVX-512 BF16 kernel dequantizes 8-bit tiles 32 values at a time: d_qk and d_c multiples of 32";
  return {};
}

// cpu.isa and the CPU decide. "auto" takes Highway's pick for this CPU, except that where the
// pick is AVX-512 and the CPU has avx512_bf16 the native bf16 dot-product kernel runs instead
// (it is about twice as fast as fp32 FMAs) for bf16 queries on a bf16 cache and tasks of at
// least one full vector of rows.
KernelChoice choose_kernel(const Problem& p, const CpuConfig& config) {
  const std::string bf16_mismatch = bf16_kernel_mismatch(p);
  const KernelChoice bf16{&run_task_avx512_bf16, "cpu_flash_decode_avx512bf16",
                          is_quantized(p.kv_format)
                              ? "AVX-512 BF16 dot products on each KV tile dequantized to bf16 (exact for the " +
                                    std::string(kv_format_name(p.kv_format)) +
                                    " codes; kv_scale folded into q and out), bf16 queries, the CPU has avx512_bf16"
                              : "AVX-512 BF16 dot products (bf16 queries, a bf16 cache and the CPU has avx512_bf16)"};
  if (config.isa == "avx512_bf16") {
    if (!cpu_has_avx512_bf16())
      fail(ErrorCode::unsupported, "cpu: config cpu.isa = avx512_bf16 but this CPU lacks avx512_bf16");
    if (bf16_mismatch.empty()) return bf16;
    return highway_choice(best_simd_kernel(), bf16_mismatch);
  }
  if (config.isa == "portable") return highway_choice(portable_simd_kernel(), "config cpu.isa = portable");
  if (config.isa != "auto") {
    const SimdKernel k = simd_kernel_for(config.isa);
    if (!k.run) {
      std::string runnable;
      for (const std::string& t : runnable_simd_targets()) runnable += (runnable.empty() ? "" : ", ") + t;
      fail(ErrorCode::unsupported, "cpu: config cpu.isa = " + config.isa +
                                       " but this build or CPU cannot run that target (runnable: " + runnable + ")");
    }
    return highway_choice(k, "config cpu.isa = " + config.isa);
  }
  const SimdKernel best = best_simd_kernel();
  if (!best_simd_target_is_avx512() || !cpu_has_avx512_bf16())
    return highway_choice(best, "the best target this CPU runs");
  if (!bf16_mismatch.empty()) return highway_choice(best, bf16_mismatch);
  if (rows_per_task(p) < 16)
    return highway_choice(best, "fewer than 16 query rows per task: the BF16 kernel would leave lanes empty");
  return bf16;
}


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
    KernelChoice kernel = choose_kernel(problem, config_);
    return std::make_unique<CpuPlan>(problem, config_, threads_, std::move(kernel));
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
    return Availability{true, std::to_string(tbb::info::default_concurrency()) + " threads, SIMD target " +
                                  cpu::best_simd_kernel().target +
                                  (cpu::cpu_has_avx512_bf16() ? ", avx512_bf16" : ", no avx512_bf16")};
  };
  f.parse_config = [](ConfigReader& root) -> std::any { return cpu::parse_cpu_config(root); };
  f.open = [](const std::any& parsed, const std::string& name) -> std::unique_ptr<Device> {
    return std::make_unique<cpu::CpuDevice>(std::any_cast<cpu::CpuConfig>(parsed), name);
  };
  return f;
}

}  // namespace mla
