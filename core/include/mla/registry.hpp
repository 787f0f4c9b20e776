// The backend registry: which backends are compiled in, whether each can run here, and
// opening a device from a config. Backends register through register_backend(); the build
// generates the list of registration calls (see cmake/MlaBackends.cmake).
#pragma once

#include <any>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mla/backend.hpp"
#include "mla/config.hpp"

namespace mla {

struct Availability {
  bool available = false;
  std::string reason;  // why not, when not; a short description of the device when it is
};

struct BackendFactory {
  std::string name;         // the config's "backend" value
  std::string description;  // one line for `mla backends`
  // A simulator: it models time, so its configs take "kernel.timing_only" and "trace_file"
  // (the CLI's --timing-only and --trace); real backends refuse those flags with this reason.
  bool simulated = false;
  std::function<Availability()> availability;
  // Reads the backend's own config fields (everything but "backend" and "name") and records
  // problems in the reader. Returns the parsed config, handed back to `open`.
  std::function<std::any(ConfigReader& root)> parse_config;
  std::function<std::unique_ptr<Device>(const std::any& parsed, const std::string& name)> open;
};

void register_backend(BackendFactory factory);

struct BackendInfo {
  std::string name;
  std::string description;
  Availability availability;
};
std::vector<BackendInfo> list_backends();
// Names of the compiled-in simulators (BackendFactory::simulated), without availability checks.
std::vector<std::string> simulated_backends();

// All problems of a config (empty when valid). Checks the schema only; does not need the
// backend to be available.
std::vector<ConfigIssue> validate_config(const nlohmann::json& config);

// Opens a device. Throws Error(invalid_config) listing the problems, or
// Error(backend_unavailable) with the reason; never falls back to another backend.
std::unique_ptr<Device> open_device(const nlohmann::json& config);
std::unique_ptr<Device> open_device_from_file(const std::string& path);
nlohmann::json read_config_file(const std::string& path);  // throws io_error / invalid_config

// configs/cpu.json, compiled in: the default when no config is given.
const nlohmann::json& default_config();

}  // namespace mla
