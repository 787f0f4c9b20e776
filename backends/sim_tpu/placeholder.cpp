#include "mla/error.hpp"
#include "mla/registry.hpp"

namespace mla {
BackendFactory make_sim_tpu_backend_factory() {
  BackendFactory f;
  f.name = "sim_tpu";
  f.description = "not implemented yet";
  f.availability = [] { return Availability{false, "not implemented yet"}; };
  f.parse_config = [](ConfigReader& root) -> std::any {
    for (const char* k : {"topology", "chip", "kernel", "cuda"}) root.mark_known(k);
    return {};
  };
  f.open = [](const std::any&, const std::string&) -> std::unique_ptr<Device> {
    fail(ErrorCode::backend_unavailable, "sim_tpu: not implemented yet");
  };
  return f;
}
}  // namespace mla
