#include "mla/host_device.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "mla/error.hpp"

namespace mla {

void* HostDevice::allocate(size_t bytes) {
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

}  // namespace mla
