// Logging on spdlog. The level comes from MLA_LOG_LEVEL (trace, debug, info, warn, error,
// off; default warn) unless set_log_level is called.
#pragma once

#include <string>

namespace mla {

// Throws Error(invalid_argument) for an unknown level name.
void set_log_level(const std::string& level);
void log_debug(const std::string& message);
void log_info(const std::string& message);
void log_warn(const std::string& message);

}  // namespace mla
