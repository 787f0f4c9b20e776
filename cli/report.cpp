#include "report.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "mla/error.hpp"

namespace mla::cli {

nlohmann::json parse_report(const RunResult& result) {
  if (result.report_json.empty()) return nullptr;
  nlohmann::json j = nlohmann::json::parse(result.report_json, nullptr, false);
  return j.is_discarded() ? nlohmann::json(nullptr) : j;
}

void print_report_lines(const nlohmann::json& report) {
  if (!report.is_object() || !report.contains("summary") || !report["summary"].is_array()) return;
  for (const auto& line : report["summary"])
    if (line.is_string()) std::cout << "  " << line.get<std::string>() << "\n";
}

void write_json_file(const std::string& path, const nlohmann::json& value) {
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) fail(ErrorCode::io_error, "cannot write \"" + path + "\"");
    out << value.dump(2) << "\n";
    if (!out) fail(ErrorCode::io_error, "writing \"" + path + "\" failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(ErrorCode::io_error, "cannot move the finished file into \"" + path + "\"");
  }
}

std::string format_number(double value, int precision) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(precision);
  os << value;
  return os.str();
}

}  // namespace mla::cli
