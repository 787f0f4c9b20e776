#include "mla/host_device.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "mla/error.hpp"
#include "mla/kv_cache.hpp"

namespace mla {

void* HostDevice::allocate(size_t bytes) {
  // Rounded up to whole 256-byte lines (aligned_alloc needs a multiple of the alignment); a
  // size within 255 bytes of SIZE_MAX would wrap to a tiny buffer, so it is refused first.
  if (bytes > std::numeric_limits<size_t>::max() - 255)
    fail(ErrorCode::out_of_memory, backend_name() + ": cannot allocate " + std::to_string(bytes) +
                                       " bytes (more than the address space)");
  void* p = std::aligned_alloc(256, std::max<size_t>(256, (bytes + 255) / 256 * 256));
  if (!p) fail(ErrorCode::out_of_memory, backend_name() + ": host allocation of " + std::to_string(bytes) + " bytes failed");
  return p;
}

void HostDevice::deallocate(void* ptr) noexcept { std::free(ptr); }

void HostDevice::copy(void* dst, const void* src, size_t bytes, CopyKind, void*) {
  if (bytes && (!dst || !src)) fail(ErrorCode::invalid_argument, backend_name() + ": copy with a null pointer");
  if (bytes) std::memmove(dst, src, bytes);
}

void HostDevice::synchronize(void*) {}

void HostDevice::do_write_kv(const WriteKvArgs& args, void*, const WriteKvOptions&) { write_kv_host(args); }

void HostDevice::do_merge_context_parallel(const Problem& problem, const TensorView& out, const TensorView& lse,
                                           Communicator& comm, void* stream) {
  merge_context_parallel_host(problem, out, lse, comm, stream, context_exchange());
}

}  // namespace mla
