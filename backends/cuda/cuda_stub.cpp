// Built when the CUDA toolkit is absent: "cuda" stays a known backend whose configs validate,
// and opening one fails with the reason.
#include "cuda_config.hpp"
#include "mla/error.hpp"
#include "mla/registry.hpp"

namespace mla {
BackendFactory make_cuda_backend_factory() {
  static const char* kReason = "built without the CUDA toolkit";
  BackendFactory f;
  f.name = "cuda";
  f.description = "NVIDIA GPU backend (not built: no CUDA toolkit at configure time)";
  f.availability = [] { return Availability{false, kReason}; };
  f.parse_config = [](ConfigReader& root) -> std::any { return cuda::parse_cuda_config(root); };
  f.open = [](const std::any&, const std::string&) -> std::unique_ptr<Device> {
    fail(ErrorCode::backend_unavailable, std::string("cuda: ") + kReason);
  };
  return f;
}
}  // namespace mla
