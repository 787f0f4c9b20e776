// Running the `mla` binary from a test: exit status and output, with a hang guard.
#pragma once

#include <array>
#include <cstdio>
#include <memory>
#include <string>
#include <sys/wait.h>

namespace mla::testing {

struct CliOutcome {
  int status = -1;     // exit code; 128 + signal when killed; 124 when `timeout` stopped it (a hang)
  std::string output;  // stdout and stderr together unless `separate_stderr`
};

// `args` is appended to the binary path as shell text. A run longer than `timeout_s` is
// killed by timeout(1), so a hang fails the test instead of stalling ctest.
inline CliOutcome run_mla(const std::string& args, int timeout_s = 300, bool stderr_to_null = false) {
  const std::string command = "timeout -k 5 " + std::to_string(timeout_s) + " " + std::string(MLA_CLI_PATH) + " " +
                              args + (stderr_to_null ? " 2>/dev/null" : " 2>&1");
  CliOutcome r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) r.output.append(buf.data(), n);
  const int raw = pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  return r;
}

inline std::string source_path(const std::string& relative) { return std::string(MLA_SOURCE_DIR) + "/" + relative; }

}  // namespace mla::testing
