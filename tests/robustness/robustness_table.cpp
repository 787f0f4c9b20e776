#include "robustness/robustness_table.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <sys/wait.h>

#include "mla/output_file.hpp"
#include "mla/registry.hpp"

namespace fs = std::filesystem;

namespace mla::robustness {

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string assemble_safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int k = 0; k < 8; ++k) out[static_cast<size_t>(k)] = static_cast<char>((n >> (8 * k)) & 0xff);
  return out + header + data;
}

namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) s.replace(pos, from.size(), to);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

std::string cell(std::string s) {  // a markdown table cell: no pipes, no newlines
  replace_all(s, "|", "\\|");
  replace_all(s, "\n", " ");
  return s;
}

}  // namespace

Table::Table(fs::path scratch) : scratch_(std::move(scratch)) {
  fs::remove_all(scratch_);
  fs::create_directories(scratch_);
}

void Table::write_text(const std::string& name, const std::string& text) const {
  std::ofstream(file(name), std::ios::binary | std::ios::trunc) << text;
}

std::string Table::shorten(std::string text) const {
  replace_all(text, scratch_.string(), "<tmp>");
  replace_all(text, std::string(MLA_SOURCE_DIR), "<src>");
  replace_all(text, std::string(MLA_CLI_PATH), "mla");
  return text;
}

void Table::cli(const std::string& category, const std::string& input, const std::string& args, int exit_code,
                const std::string& needle, const std::vector<std::string>& outputs) {
  // stderr only: the one-line error is what a user sees; stdout is discarded.
  const std::string command = "cd '" + scratch_.string() + "' && timeout -k 5 60 " + std::string(MLA_CLI_PATH) + " " +
                              args + " 2>&1 1>/dev/null";
  std::string err;
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe);
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) err.append(buf.data(), n);
  const int raw = pclose(pipe);
  const int status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  const auto lines = lines_of(err);
  const std::string first = lines.empty() ? std::string() : lines.front();

  INFO("input: " << input << "\ncommand: mla " << args << "\nstderr:\n" << err);
  CHECK(status != 124);  // timeout(1): the command hung
  CHECK(status < 128);   // not killed by a signal
  CHECK(status == exit_code);
  CHECK_THAT(first, Catch::Contains(needle));
  // One line naming the problem; CLI11 adds a fixed hint line after its own parse errors.
  for (size_t k = 1; k < lines.size(); ++k) CHECK_THAT(lines[k], Catch::Contains("Run with --help"));
  for (const auto& o : outputs) CHECK(!fs::exists(file(o)));
  // No temporary file of any output ("<name>.partial-XXXXXX") may survive a failed command.
  for (const auto& entry : fs::recursive_directory_iterator(scratch_))
    CHECK(entry.path().filename().string().find(".partial") == std::string::npos);
  rows_.push_back({category, input, "`mla " + shorten(args) + "`", "exit " + std::to_string(status), shorten(first)});
}

void Table::api(const std::string& category, const std::string& input, const std::string& via, ErrorCode code,
                const std::string& needle, const std::function<void()>& action) {
  std::string result, message;
  try {
    action();
    result = "accepted";
  } catch (const Error& e) {
    result = std::string("Error(") + error_code_name(e.code()) + ")";
    message = e.what();
  } catch (const std::exception& e) {
    result = std::string("std::exception (wrong type)");
    message = e.what();
  }
  INFO("input: " << input << "\nresult: " << result << "\nmessage: " << message);
  CHECK(result == std::string("Error(") + error_code_name(code) + ")");
  CHECK_THAT(message, Catch::Contains(needle));
  CHECK(message.find('\n') == std::string::npos);
  rows_.push_back({category, input, "`" + via + "`", result, shorten(message)});
}

void Table::accepted(const std::string& category, const std::string& input, const std::string& via,
                     const std::string& why, const std::function<void()>& action) {
  std::string result = "accepted";
  try {
    action();
  } catch (const std::exception& e) {
    result = std::string("threw: ") + e.what();
  }
  INFO("input: " << input);
  CHECK(result == "accepted");
  rows_.push_back({category, input, "`" + via + "`", result, why});
}

void Table::observed(const std::string& category, const std::string& input, const std::string& via,
                     const std::string& note, const std::function<void()>& action) {
  std::string result = "accepted";
  std::string message = note;
  try {
    action();
  } catch (const Error& e) {
    result = std::string("Error(") + error_code_name(e.code()) + ")";
    message = std::string(e.what()) + " (" + note + ")";
  }
  rows_.push_back({category, input, "`" + via + "`", result + " (known gap)", shorten(message)});
}

void Table::write_markdown(const std::string& path, const std::vector<std::string>& notes) const {
  const std::map<std::string, std::string> titles = {{"config", "Device configs"},
                                                     {"arguments", "Operator arguments"},
                                                     {"files", "Input files (safetensors)"},
                                                     {"compare", "`mla compare` inputs"},
                                                     {"outputs", "Output files"},
                                                     {"limits", "Sizes, streams and memory"},
                                                     {"replay", "Inputs files and replay"},
                                                     {"codes", "Exit codes"}};
  std::ostringstream md;
  md << "# Robustness: bad input and what happens\n\n"
     << "Generated by `tests/robustness/robustness_doc.cpp` (ctest: \"bad inputs are rejected cleanly and docs/robustness.md is regenerated\"); do not "
        "edit by hand. Every row below was run by that test, which checks the exit code (or error code), that the "
        "message names the problem in one line, that nothing crashed or hung (60 s limit) and that no output file "
        "or partial file was left behind. `<tmp>` is the test's scratch folder, `<src>` the source tree.\n\n"
     << "CLI exit codes: 0 ok, 1 check failed, 2 bad input (arguments, configs, files, paths), 3 the backend is "
        "unavailable, does not support the request, or the request does not fit in memory (the device's, a modelled "
        "one, or the host limit), 4 device or internal error.\n";
  for (const char* cat : {"config", "arguments", "files", "compare", "outputs", "limits", "replay", "codes"}) {
    md << "\n## " << titles.at(cat) << "\n\n| # | input | how | result | message |\n| --- | --- | --- | --- | --- |\n";
    int n = 0;
    for (const auto& r : rows_)
      if (r.category == cat)
        md << "| " << ++n << " | " << cell(r.input) << " | " << cell(r.via) << " | " << cell(r.result) << " | "
           << cell(r.message) << " |\n";
  }
  md << "\n## Notes\n\n";
  for (const auto& note : notes) md << "- " << note << "\n";
  write_output_file(path, [&](std::ostream& out) { out << md.str(); });
}

ApiSetup ApiSetup::make(int64_t s_q, bool causal, int64_t seqlen) {
  ApiSetup s;
  s.device = open_device(default_config());
  Problem p;
  p.batch = 2;
  p.s_q = s_q;
  p.h_q = 16;
  p.page_size = 16;
  p.causal = causal;
  InputSpec spec;
  spec.seqlen = seqlen;
  spec.seed = 11;
  s.in = make_random_inputs(p, spec);
  s.plan = s.device->plan(s.in.problem);
  s.args = s.in.args();
  s.schedule = s.plan->schedule(s.args.cache_seqlens);
  return s;
}

}  // namespace mla::robustness
