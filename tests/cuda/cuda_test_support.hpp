// Helpers shared by the cuda tests: whether a CUDA device can run here (the reason to SKIP when
// not), a host tensor's copy in device memory, and a run's operands copied to the device. Public
// mla headers only, so the files that include this build without the CUDA toolkit too.
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "mla/backend.hpp"
#include "mla/compare.hpp"
#include "mla/host_tensor.hpp"
#include "mla/inputs.hpp"
#include "mla/kv_format.hpp"
#include "mla/problem.hpp"
#include "mla/reference.hpp"
#include "mla/registry.hpp"

namespace mla::testing {

// "" when the cuda backend can open a device here, else its availability reason.
inline std::string why_no_cuda_device() {
  for (const auto& b : list_backends())
    if (b.name == "cuda") return b.availability.available ? "" : b.availability.reason;
  return "cuda backend not registered";
}

// At the top of a test that needs a CUDA device: without one, WARN the reason and return (the
// test passes as skipped).
#define MLA_SKIP_WITHOUT_CUDA_DEVICE()                                         \
  do {                                                                         \
    const std::string mla_skip_reason_ = mla::testing::why_no_cuda_device();   \
    if (!mla_skip_reason_.empty()) {                                           \
      WARN("skipped: " + mla_skip_reason_);                                    \
      return;                                                                  \
    }                                                                          \
  } while (0)

// Device 0 of the cuda backend with cuda.kernel = `kernel` ("auto", "hopper", ...).
inline std::unique_ptr<Device> open_cuda_device(const char* kernel = "auto") {
  return open_device(nlohmann::json{
      {"backend", "cuda"}, {"name", "test gpu"}, {"cuda", {{"device_index", 0}, {"kernel", kernel}}}});
}

// Whether this GPU runs the Hopper kernels (sm_90): a plain bf16 problem plans on kernel = hopper.
inline bool hopper_kernel_runs_here() {
  Problem p;
  p.num_blocks = 4;
  p.max_blocks_per_seq = 4;
  return open_cuda_device("hopper")->supports(p).supported;
}

// The kernel the default (auto) choice runs on sm_90: the narrow kernel for 8-bit caches with at
// most 32 query rows (`rows` = s_q x h_q; wgmma N = 16 up to 16 rows, else 32), else the Hopper
// kernel (named for the format when it is quantized).
inline std::string expected_sm90_kernel(KvFormat f, int64_t rows) {
  const std::string hopper = "cuda_hopper_tma_wgmma_m64";
  if (is_quantized(f) && rows <= 32)
    return std::string("cuda_hopper_narrow_keys_m64_n") + (rows <= 16 ? "16_" : "32_") + kv_format_name(f);
  return is_quantized(f) ? hopper + "_" + kv_format_name(f) : hopper;
}

// After MLA_SKIP_WITHOUT_CUDA_DEVICE, in a test of the sm_90 kernels: on another GPU, WARN and return.
#define MLA_SKIP_WITHOUT_HOPPER()                                                     \
  do {                                                                                \
    if (!mla::testing::hopper_kernel_runs_here()) {                                   \
      WARN("skipped: the Hopper kernels do not run on this GPU (they need sm_90)");   \
      return;                                                                         \
    }                                                                                 \
  } while (0)

// A host tensor copied to the device; `view` is the same tensor in device memory.
struct DeviceCopy {
  Device& dev;
  void* ptr = nullptr;
  TensorView view;
  DeviceCopy(Device& d, const HostTensor& host) : dev(d), ptr(d.allocate(host.bytes())) {
    d.copy(ptr, host.data(), host.bytes(), CopyKind::host_to_device);
    view = host.view();
    view.data = ptr;
    view.space = MemorySpace::device;
  }
  ~DeviceCopy() { dev.deallocate(ptr); }
  DeviceCopy(const DeviceCopy&) = delete;
  DeviceCopy& operator=(const DeviceCopy&) = delete;
};

// Every operand of `host` that is set, copied to the device (the copies kept in `buffers`); the
// RunArgs of those copies.
inline RunArgs upload_run_args(Device& dev, const RunArgs& host, std::vector<std::unique_ptr<DeviceCopy>>& buffers) {
  RunArgs gpu;
  for (const RunOperand& op : kRunOperands) {
    const TensorView& h = host.*op.member;
    if (h.empty()) continue;
    HostTensor copy(h.dtype, std::vector<int64_t>(h.shape.begin(), h.shape.begin() + h.rank));
    std::memcpy(copy.data(), h.data, copy.bytes());
    buffers.push_back(std::make_unique<DeviceCopy>(dev, copy));
    gpu.*op.member = buffers.back()->view;
  }
  return gpu;
}

// Schedules and runs `plan` on the device operands `gpu`, copies out and lse back into `in`, and
// compares them with the float64 reference on `in`'s host operands.
inline Comparison run_against_reference(Device& dev, Plan& plan, const RunArgs& gpu, HostInputs& in) {
  auto schedule = plan.schedule(gpu.cache_seqlens);
  plan.run(gpu, *schedule);
  dev.synchronize();
  dev.copy(in.out.data(), gpu.out.data, in.out.bytes(), CopyKind::device_to_host);
  dev.copy(in.lse.data(), gpu.lse.data, in.lse.bytes(), CopyKind::device_to_host);
  return compare_to_reference(in.problem, reference_decode(in.problem, in.args()), in.out.view(), in.lse.view());
}

}  // namespace mla::testing
