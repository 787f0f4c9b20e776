// A Device whose memory is the host's: the allocate / copy / synchronize half of the interface
// that every host backend (cpu, sim_tpu) shares. Backends derive from it and add do_plan.
#pragma once

#include "mla/backend.hpp"

namespace mla {

class HostDevice : public Device {
 public:
  [[nodiscard]] MemorySpace memory_space() const final { return MemorySpace::host; }
  // 256-byte aligned host memory; Error(out_of_memory) naming the backend when it fails.
  [[nodiscard]] void* allocate(size_t bytes) final;
  void deallocate(void* ptr) noexcept final;
  // Blocking memmove whatever the kind; the stream is ignored.
  void copy(void* dst, const void* src, size_t bytes, CopyKind kind, void* stream = nullptr) final;
  void synchronize(void* stream = nullptr) final;

 protected:
  // write_kv_host: every slot checked, then every token quantized by the format's traits.
  void do_write_kv(const WriteKvArgs& args, void* stream, const WriteKvOptions& options) override;
  // The host merge of mla/context_parallel.hpp, by the device's context_exchange().
  void do_merge_context_parallel(const Problem& problem, const TensorView& out, const TensorView& lse,
                                 Communicator& comm, void* stream) override;
};

}  // namespace mla
