// `mla backends` and `mla validate-config`.
#include <iostream>

#include "commands.hpp"
#include "mla/error.hpp"
#include "mla/registry.hpp"

namespace mla::cli {

void add_backends_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("backends", "List compiled-in backends, whether each can run here, and why not");
  cmd->callback([] {
    for (const auto& b : list_backends()) {
      std::cout << b.name << "\t" << (b.availability.available ? "available" : "unavailable") << "\t"
                << b.availability.reason << "\t(" << b.description << ")\n";
    }
  });
}

void add_validate_config_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("validate-config", "Check a device config: exit 0, or list every problem");
  static std::string path;
  cmd->add_option("file", path, "Config JSON file")->required();
  cmd->callback([] {
    nlohmann::json config = read_config_file(path);
    auto issues = validate_config(config);
    if (issues.empty()) {
      std::cout << path << ": valid (" << config.value("backend", std::string("?")) << ")\n";
      return;
    }
    for (const auto& issue : issues) std::cerr << path << ": " << issue.to_string() << "\n";
    exit_status() = 2;
  });
}

}  // namespace mla::cli
