// What `mla compare` prints and writes: a line per case and backend, the repro command of
// every failure, a summary per config, the JSON file and the JUnit XML file.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compare_cases.hpp"
#include "compare_runner.hpp"

namespace mla::cli {

struct Record {
  size_t case_index = 0;
  size_t target_index = 0;
  Outcome outcome;
  std::string repro;  // one shell line that reruns this case on this config
};

// `mla run --config CFG --set ... <shape flags> --seed N --check` when that reproduces the
// verdict; otherwise (a tolerance override, or a determinism failure) the `mla compare --only`
// line that reruns just this case on just this config.
std::string repro_line(const Target& target, const CompareCase& c, const std::string& cases_arg, uint64_t base_seed,
                       int repeat, const Outcome& outcome);

void print_record(std::ostream& os, const Target& target, const CompareCase& c, const Record& r);
void print_summary(std::ostream& os, const std::vector<Target>& targets, const std::vector<Record>& records, int repeat);

nlohmann::json results_json(const std::vector<Target>& targets, const std::vector<CompareCase>& cases,
                            const std::vector<Record>& records, const std::string& cases_arg, int repeat);
// One <testsuite> per config, one <testcase> per case; unsupported and skipped are <skipped>.
std::string junit_xml(const std::vector<Target>& targets, const std::vector<CompareCase>& cases,
                      const std::vector<Record>& records);

std::string shell_quote(const std::string& word);

}  // namespace mla::cli
