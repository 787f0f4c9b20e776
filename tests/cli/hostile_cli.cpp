// The CLI end to end on issue 11's remaining items: --save-inputs then --inputs reproduces the
// same outputs bit for bit (absorb, causal, s_q > 1, fp16, explicit scale); --json /dev/stdout
// under a shell redirection appends to what was printed; every sweep row has the header's
// columns, on a real backend and on a simulator with --functional.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "compare/cli_runner.hpp"
#include "mla/safetensors.hpp"

namespace fs = std::filesystem;
using mla::testing::run_mla;

namespace {
std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
size_t count(const std::string& line, char c) { return static_cast<size_t>(std::count(line.begin(), line.end(), c)); }
}  // namespace

TEST_CASE("cli: --save-inputs then --inputs replays the same problem bit for bit", "[cli][hostile]") {
  const std::string dir = (fs::temp_directory_path() / ("mla_replay_" + std::to_string(getpid()))).string();
  fs::create_directories(dir);
  const std::string shape = "--variant absorb --causal --s-q 2 --dtype fp16 --softmax-scale 0.07 --batch 2 --heads 16 "
                            "--seqlen 70 --varlen --page-size 16 --seed " + std::to_string(getpid());
  auto first = run_mla("run " + shape + " --save-inputs " + dir + "/in.st --output " + dir + "/o1.st --check");
  INFO(first.output);
  REQUIRE(first.status == 0);
  auto second = run_mla("run --inputs " + dir + "/in.st --output " + dir + "/o2.st --check");
  INFO(second.output);
  REQUIRE(second.status == 0);
  CHECK_THAT(second.output, Catch::Contains("causal=on"));
  CHECK_THAT(second.output, Catch::Contains("absorb"));
  const auto saved = mla::read_safetensors_file(dir + "/in.st");
  CHECK(saved.metadata.at("mla.causal") == "true");
  CHECK(saved.metadata.at("mla.variant") == "absorb");
  CHECK(saved.metadata.at("mla.s_q") == "2");
  CHECK(std::stof(saved.metadata.at("mla.softmax_scale")) == 0.07f);
  const auto a = mla::read_safetensors(dir + "/o1.st"), b = mla::read_safetensors(dir + "/o2.st");
  for (const char* name : {"out", "lse"}) {
    REQUIRE(a.count(name));
    REQUIRE(b.count(name));
    REQUIRE(a.at(name).bytes() == b.at(name).bytes());
    CHECK(std::memcmp(a.at(name).data(), b.at(name).data(), a.at(name).bytes()) == 0);
  }
  fs::remove_all(dir);
}

TEST_CASE("cli: --json /dev/stdout appends to a redirected stdout instead of replacing it", "[cli][hostile]") {
  const std::string file = (fs::temp_directory_path() / ("mla_stdout_" + std::to_string(getpid()) + ".txt")).string();
  auto r = run_mla("run --batch 1 --heads 16 --seqlen 8 --json /dev/stdout > " + file);
  CHECK(r.status == 0);
  const std::string text = read(file);
  const auto printed = text.find("backend: cpu"), json = text.find("\"backend\": \"cpu\"");
  CHECK(printed != std::string::npos);
  CHECK(json != std::string::npos);
  CHECK(printed < json);
  CHECK(fs::is_symlink("/dev/stdout"));
  std::remove(file.c_str());
}

TEST_CASE("cli: every mla sweep row has the header's columns", "[cli][hostile]") {
  for (const std::string args : {std::string("sweep --batches 1,2 --seqlens 32 --heads 16"),
                                 "sweep --config " + mla::testing::source_path("configs/sc11_fp300.json") +
                                     " --functional --batches 1,2 --seqlens 32 --heads 16"}) {
    auto r = run_mla(args, 300, true);
    INFO(args << "\n" << r.output);
    REQUIRE(r.status == 0);
    std::istringstream lines(r.output);
    std::string line;
    size_t header = 0, rows = 0;
    while (std::getline(lines, line)) {
      if (line.rfind("| batch", 0) == 0) header = count(line, '|');
      else if (line.rfind("| ", 0) == 0) {
        ++rows;
        CHECK(count(line, '|') == header);
        CHECK(line.find("n/a") == std::string::npos);
      }
    }
    CHECK(header > 0);
    CHECK(rows == 2);
  }
}
