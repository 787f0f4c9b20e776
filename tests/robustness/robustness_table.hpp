// The bad-input table: each row is one input tried, how (CLI or API), what was expected and
// what was observed. The rows are checked as they are added; the test then writes the table
// to docs/robustness.md so the document always shows what the code does today.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mla/error.hpp"
#include "mla/inputs.hpp"
#include "mla/mla.hpp"

namespace mla::robustness {

// The whole file at `path` as bytes ("" when it cannot be read).
std::string read_bytes(const std::filesystem::path& path);
// A safetensors file from a header and a data section, the header length little-endian.
std::string assemble_safetensors(const std::string& header, const std::string& data);

struct Row {
  std::string category;  // "config", "arguments", "files", "compare"
  std::string input;     // what was tried, in words
  std::string via;       // the command line (paths shortened) or the API call
  std::string result;    // "exit 2", "Error(invalid_argument)", "accepted"
  std::string message;   // the first line of the error, paths shortened
};

class Table {
 public:
  explicit Table(std::filesystem::path scratch);
  [[nodiscard]] const std::filesystem::path& scratch() const { return scratch_; }
  [[nodiscard]] std::string file(const std::string& name) const { return (scratch_ / name).string(); }
  void write_text(const std::string& name, const std::string& text) const;

  // Runs `mla <args>`, expecting exit `exit_code` and a first stderr line containing `needle`.
  // Also checks: exited (no signal, no 60 s hang), the error is one line (plus CLI11's help
  // hint), and neither the --json/--output file named `outputs` nor its ".partial" exists.
  void cli(const std::string& category, const std::string& input, const std::string& args, int exit_code,
           const std::string& needle, const std::vector<std::string>& outputs = {});
  // Runs `action`, expecting mla::Error with `code` and a message containing `needle`.
  void api(const std::string& category, const std::string& input, const std::string& via, ErrorCode code,
           const std::string& needle, const std::function<void()>& action);
  // A row for an input that the contract accepts; `action` checks the result itself.
  void accepted(const std::string& category, const std::string& input, const std::string& via,
                const std::string& why, const std::function<void()>& action);

  // A known gap, recorded as observed without judging it here (a [!mayfail] test asserts the
  // right behaviour, so the gap stays visible in the test output until it is fixed).
  void observed(const std::string& category, const std::string& input, const std::string& via,
                const std::string& note, const std::function<void()>& action);

  // Markdown: a header, the rows grouped by category, the notes.
  void write_markdown(const std::string& path, const std::vector<std::string>& notes) const;
  [[nodiscard]] size_t size() const { return rows_.size(); }

 private:
  std::string shorten(std::string text) const;
  std::filesystem::path scratch_;
  std::vector<Row> rows_;
};

// A cpu device (the embedded default config), small random inputs, a plan and a schedule:
// the starting point that each operator-argument row breaks in one place.
struct ApiSetup {
  std::unique_ptr<Device> device;
  HostInputs in;
  std::unique_ptr<Plan> plan;
  std::unique_ptr<Schedule> schedule;
  RunArgs args;
  static ApiSetup make(int64_t s_q = 1, bool causal = false, int64_t seqlen = 40);
  void run(const RunOptions& options = {}) const { plan->run(args, *schedule, nullptr, options); }
};

void add_config_rows(Table& table);
void add_argument_rows(Table& table);
void add_file_rows(Table& table);
void add_compare_rows(Table& table);
void add_output_rows(Table& table);
void add_limit_rows(Table& table);
void add_replay_rows(Table& table);
void add_exit_code_rows(Table& table);

}  // namespace mla::robustness
