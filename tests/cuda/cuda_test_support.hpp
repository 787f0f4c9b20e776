// Helpers shared by the cuda tests: whether a CUDA device can run here (the reason to SKIP when
// not), a host tensor's copy in device memory, and a run's operands copied to the device. Public
// mla headers only, so the files that include this build without the CUDA toolkit too.
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "mla/backend.hpp"
#include "mla/host_tensor.hpp"
#include "mla/problem.hpp"
#include "mla/registry.hpp"

namespace mla::testing {

// "" when the cuda backend can open a device here, else its availability reason.
inline std::string why_no_cuda_device() {
  for (const auto& b : list_backends())
    if (b.name == "cuda") return b.availability.available ? "" : b.availability.reason;
  return "cuda backend not registered";
}

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

}  // namespace mla::testing
