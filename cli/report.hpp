// Printing results: a backend's report lines, and JSON files written whole or not at all.
#pragma once

#include <functional>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "mla/backend.hpp"

namespace mla::cli {

// The backend's report_json as JSON (null when empty or not JSON).
nlohmann::json parse_report(const RunResult& result);
// Prints the "summary" lines of a backend report, indented.
void print_report_lines(const nlohmann::json& report);
// The body that writes `value` as indented JSON (for OutputFiles::write).
std::function<void(std::ostream&)> json_body(const nlohmann::json& value);
std::string format_number(double value, int precision = 3);

}  // namespace mla::cli
