#include "mla/logging.hpp"

#include <cstdlib>
#include <memory>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "mla/error.hpp"

namespace mla {

namespace {

spdlog::level::level_enum parse_level(const std::string& name) {
  auto level = spdlog::level::from_str(name);
  // spdlog maps unknown names to "off"; only "off" itself should mean off.
  if (level == spdlog::level::off && name != "off")
    fail(ErrorCode::invalid_argument, "log level: expected trace, debug, info, warn, error or off, got \"" + name + "\"");
  return level;
}

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::stderr_color_mt("mla");
    l->set_pattern("[mla %l] %v");
    l->set_level(spdlog::level::warn);
    if (const char* env = std::getenv("MLA_LOG_LEVEL")) {
      try {
        l->set_level(parse_level(env));
      } catch (const Error& e) {
        l->warn("MLA_LOG_LEVEL ignored: {}", e.what());
      }
    }
    return l;
  }();
  return *instance;
}

}  // namespace

void set_log_level(const std::string& level) { logger().set_level(parse_level(level)); }
void log_debug(const std::string& message) { logger().debug(message); }
void log_info(const std::string& message) { logger().info(message); }
void log_warn(const std::string& message) { logger().warn(message); }

}  // namespace mla
