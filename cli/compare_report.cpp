#include "compare_report.hpp"

#include <cstdio>
#include <map>
#include <ostream>
#include <sstream>

#include "mla/error.hpp"
#include "report.hpp"

namespace mla::cli {

namespace {

std::string sci(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", x);
  return buf;
}

std::string time_text(const Outcome& o) {
  if (o.seconds < 0) return "time n/a";
  return format_number(o.seconds * 1e6, 1) + " us " + (o.simulated ? "(simulated)" : "(wall)");
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 forbids most control characters even as references; a message never needs them.
        if (static_cast<unsigned char>(ch) < 0x20 && ch != '\n' && ch != '\t') out += '?';
        else out += ch;
    }
  }
  return out;
}

nlohmann::json comparison_json(const Comparison& c) {
  return {{"max_abs_error", c.max_abs_error},
          {"rel_l2_error", c.rel_l2_error},
          {"cosine_distance", c.cosine_distance},
          {"lse_max_abs_error", c.lse_max_abs_error},
          {"nonfinite_mismatches", c.nonfinite_mismatches},
          {"nonfinite_positions_match", c.nonfinite_mismatches == 0},
          {"unwritten", c.unwritten},
          {"zero_fraction", c.zero_fraction},
          {"trustworthy", c.trustworthy},
          {"passed", c.passed},
          {"tolerance", {{"rel_l2", c.tolerance.rel_l2}, {"max_abs", c.tolerance.max_abs}, {"lse_abs", c.tolerance.lse_abs}}}};
}

}  // namespace

std::string shell_quote(const std::string& w) {
  if (!w.empty() && w.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=./,:@%") ==
                        std::string::npos)
    return w;
  std::string out = "'";
  for (char ch : w) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

std::string repro_line(const Target& t, const CompareCase& c, const std::string& cases_arg, uint64_t base_seed,
                       int repeat, const Outcome& o) {
  std::string sets;
  for (const auto& s : t.overrides) sets += " --set " + shell_quote(s);
  const bool run_reproduces = !c.has_tolerance_override() && o.status != Status::nondeterministic;
  if (run_reproduces) return "mla run --config " + shell_quote(t.path) + sets + " " + c.shape.flags() + " --check";
  // --set without a prefix applies to the one config given, so the overrides carry over as they are.
  return "mla compare --configs " + shell_quote(t.path) + sets + " --cases " + shell_quote(cases_arg) + " --only " +
         shell_quote(c.name) + " --seed " + std::to_string(base_seed) +
         (repeat > 1 ? " --repeat " + std::to_string(repeat) : "");
}

void print_record(std::ostream& os, const Target& t, const CompareCase&, const Record& r) {
  const Outcome& o = r.outcome;
  os << "  " << t.label << ": " << status_name(o.status);
  if (!o.kernel.empty()) os << "  kernel " << o.kernel;
  if (o.compared) {
    const Comparison& c = o.comparison;
    os << "  max_abs " << sci(c.max_abs_error) << "  rel_l2 " << sci(c.rel_l2_error) << "  cos_dist "
       << sci(c.cosine_distance) << "  lse_err " << sci(c.lse_max_abs_error) << "  nan/inf "
       << (c.nonfinite_mismatches == 0 ? "match" : std::to_string(c.nonfinite_mismatches) + " mismatched");
    if (c.unwritten) os << " (" << c.unwritten << " unwritten)";
    if (!c.trustworthy) os << "  mostly zeros (" << sci(c.zero_fraction) << " of nonzero reference elements)";
    if (o.quantization_compared) {
      const Comparison& q = o.quantization;
      os << "  quantization vs bf16: rel_l2 " << sci(q.rel_l2_error) << " max_abs " << sci(q.max_abs_error)
         << (q.passed ? "" : " FAIL") << " (tol rel_l2<=" << sci(q.tolerance.rel_l2) << ")";
    }
    os << "  " << time_text(o);
    if (o.runs > 1) os << "  " << (o.deterministic ? "deterministic" : "NOT deterministic") << " x" << o.runs;
    if (is_failure(o.status))
      os << "\n    tolerance rel_l2<=" << sci(c.tolerance.rel_l2) << " max_abs<=" << sci(c.tolerance.max_abs)
         << " lse<=" << sci(c.tolerance.lse_abs) << (o.deterministic ? "" : "; " + o.determinism);
  } else {
    os << "  " << o.message;
  }
  os << "\n";
  if (is_failure(o.status)) os << "    repro: " << r.repro << "\n";
}

void print_summary(std::ostream& os, const std::vector<Target>& targets, const std::vector<Record>& records, int repeat) {
  os << "\nsummary:\n";
  for (size_t i = 0; i < targets.size(); ++i) {
    std::map<Status, int> count;
    int nondet = 0, det_checked = 0;
    for (const auto& r : records)
      if (r.target_index == i) {
        ++count[r.outcome.status];
        if (r.outcome.runs > 1) {
          ++det_checked;
          nondet += !r.outcome.deterministic;
        }
      }
    const Target& t = targets[i];
    os << "  " << t.label << " (" << (t.backend.empty() ? "?" : t.backend)
       << (t.device_name.empty() ? "" : ", " + t.device_name) << "): ";
    if (!t.skip_reason.empty()) {
      os << "skipped: " << t.skip_reason << "\n";
      continue;
    }
    os << count[Status::pass] << " pass, " << count[Status::fail] << " fail, " << count[Status::mistrusted]
       << " mistrusted, " << count[Status::error] << " error, " << count[Status::unsupported] << " unsupported";
    if (count[Status::skipped]) os << ", " << count[Status::skipped] << " skipped";
    if (repeat > 1)
      os << "; determinism (" << repeat << " runs): " << (det_checked - nondet) << " of " << det_checked
         << " cases bitwise identical";
    os << "\n";
  }
}

nlohmann::json results_json(const std::vector<Target>& targets, const std::vector<CompareCase>& cases,
                            const std::vector<Record>& records, const std::string& cases_arg, int repeat) {
  nlohmann::json configs = nlohmann::json::array();
  for (const auto& t : targets)
    configs.push_back({{"path", t.path},
                       {"label", t.label},
                       {"overrides", t.overrides},
                       {"backend", t.backend},
                       {"device", t.device_name},
                       {"available", t.skip_reason.empty()},
                       {"skip_reason", t.skip_reason},
                       {"open_error", t.open_error}});
  nlohmann::json results = nlohmann::json::array();
  int failures = 0;
  for (const auto& r : records) {
    const Outcome& o = r.outcome;
    const CompareCase& c = cases[r.case_index];
    failures += is_failure(o.status);
    nlohmann::json j = {{"case", c.name},
                        {"shape", c.describe()},
                        {"seed", c.shape.seed},
                        {"config", targets[r.target_index].label},
                        {"backend", targets[r.target_index].backend},
                        {"status", std::string(status_name(o.status))},
                        {"failed", is_failure(o.status)},
                        {"kernel", o.kernel},
                        {"message", o.message},
                        {"seconds", o.seconds},
                        {"simulated", o.simulated},
                        {"runs", o.runs},
                        {"repro", r.repro}};
    j["kv_format"] = kv_format_name(c.kv());
    if (o.compared) j["comparison"] = comparison_json(o.comparison);
    // Quantized formats: the result against the reference on the unquantized bf16 cache.
    if (o.quantization_compared) j["quantization"] = comparison_json(o.quantization);
    if (o.runs > 1) j["deterministic"] = o.deterministic;
    if (!o.determinism.empty()) j["determinism"] = o.determinism;
    results.push_back(j);
  }
  return {{"cases", cases_arg}, {"repeat", repeat},       {"configs", configs},
          {"results", results}, {"failures", failures},   {"case_count", cases.size()}};
}

std::string junit_xml(const std::vector<Target>& targets, const std::vector<CompareCase>& cases,
                 const std::vector<Record>& records) {
  std::ostringstream xml;
  xml << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"mla compare\">\n";
  for (size_t i = 0; i < targets.size(); ++i) {
    int tests = 0, failures = 0, errors = 0, skipped = 0;
    double time = 0;
    std::ostringstream body;
    for (const auto& r : records) {
      if (r.target_index != i) continue;
      const Outcome& o = r.outcome;
      const CompareCase& c = cases[r.case_index];
      ++tests;
      const double secs = o.seconds > 0 ? o.seconds : 0;
      time += secs;
      body << "    <testcase classname=\"mla.compare." << xml_escape(targets[i].label) << "\" name=\""
           << xml_escape(c.name) << "\" time=\"" << secs << "\">\n";
      const std::string detail = c.describe() + "\nkernel: " + o.kernel + "\n" + o.message +
                                 (r.repro.empty() ? "" : "\nrepro: " + r.repro);
      if (o.status == Status::unsupported || o.status == Status::skipped) {
        ++skipped;
        body << "      <skipped message=\"" << xml_escape(std::string(status_name(o.status)) + ": " + o.message)
             << "\"/>\n";
      } else if (o.status == Status::error) {
        ++errors;
        body << "      <error message=\"" << xml_escape(o.message) << "\">" << xml_escape(detail) << "</error>\n";
      } else if (is_failure(o.status)) {
        ++failures;
        body << "      <failure message=\"" << xml_escape(std::string(status_name(o.status)) + ": " + o.message)
             << "\">" << xml_escape(detail) << "</failure>\n";
      }
      if (o.status == Status::pass) body << "      <system-out>" << xml_escape(detail) << "</system-out>\n";
      body << "    </testcase>\n";
    }
    xml << "  <testsuite name=\"" << xml_escape(targets[i].label) << "\" tests=\"" << tests << "\" failures=\""
        << failures << "\" errors=\"" << errors << "\" skipped=\"" << skipped << "\" time=\"" << time << "\">\n"
        << body.str() << "  </testsuite>\n";
  }
  xml << "</testsuites>\n";
  return xml.str();
}

}  // namespace mla::cli
