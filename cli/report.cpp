#include "report.hpp"

#include <iostream>
#include <sstream>


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

std::function<void(std::ostream&)> json_body(const nlohmann::json& value) {
  return [value](std::ostream& out) { out << value.dump(2) << "\n"; };
}

std::string format_number(double value, int precision) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(precision);
  os << value;
  return os.str();
}

}  // namespace mla::cli
