// Helpers shared by the cuda tests: whether a CUDA device can run here (the reason to SKIP
// when not), and a host tensor's copy in device memory. Public mla headers only, so the files
// that include this build without the CUDA toolkit too.
#pragma once

#include <string>

#include "mla/backend.hpp"
#include "mla/host_tensor.hpp"
#include "mla/registry.hpp"

namespace mla::testing {

// "" when the cuda backend can open a device here, else its availability reason.
inline std::string why_no_cuda_device() {
  for (const auto& b : list_backends())
    if (b.name == "cuda") return b.availability.available ? "" : b.availability.reason;
  return "cuda backend not registered";
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

}  // namespace mla::testing
