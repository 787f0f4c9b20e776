// `mla compare`: placeholder until the conformance harness lands.
#include "commands.hpp"
#include "mla/error.hpp"

namespace mla::cli {
void add_compare_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("compare", "Run identical inputs through several configs against the reference (not implemented yet)");
  cmd->callback([] { fail(ErrorCode::unsupported, "mla compare is not implemented yet"); });
}
}  // namespace mla::cli
