// Properties of the timing model: lower bounds, double buffering, monotonicity, byte counts
// against the analytic count, and lanes whose events never overlap (read back from the trace).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "sim_tpu_helpers.hpp"

using namespace mla;
using sim_tpu_test::shipped_config;
using sim_tpu_test::simulated_seconds;

namespace {

Problem deepseek(int64_t batch) {
  Problem p;
  p.batch = batch;
  p.h_q = 128;
  return p;
}

nlohmann::json sc11(const std::string& partition, bool double_buffer) {
  nlohmann::json c = shipped_config("sc11_fp300.json");
  c["kernel"]["partition"] = partition;
  c["kernel"]["double_buffer"] = double_buffer;
  return c;
}

}  // namespace

TEST_CASE("sim_tpu latency is at least the DDR and compute bounds of the chips", "[sim_tpu]") {
  for (const char* partition : {"heads", "batch", "sequence"})
    for (int64_t batch : {1, 16}) {
      nlohmann::json config = sc11(partition, true), report;
      const double t = simulated_seconds(config, deepseek(batch), 1024, &report);
      const double chips = report["chips_busy"].get<double>();
      const double ddr = (report["bytes"]["ddr_read"].get<double>() + report["bytes"]["ddr_written"].get<double>()) / chips;
      const double ddr_bound = ddr / (config["chip"]["ddr"]["bandwidth_gbps"].get<double>() * 1e9);
      const double peak = chips * config["chip"]["cores"].get<double>() * config["chip"]["core"]["bdc_bf16_tflops"].get<double>() * 1e12;
      const double flop_bound = report["flops"].get<double>() / peak;
      INFO(partition << " b=" << batch << " t=" << t << " ddr bound=" << ddr_bound << " flop bound=" << flop_bound);
      CHECK(t >= ddr_bound);
      CHECK(t >= flop_bound);
    }
}

// Strict: with the same tiling, double buffering is never slower than single buffering. The
// memories arbitrate oldest-first (timing_engine.cpp), so what double buffering issues early
// (prefetch gathers, the next item's query load) only uses bandwidth the demand transfers leave.
// The grid holds the old counterexamples (SC11, b=32 and 128, len=512, 0.8% and 1.9% slower under
// max-min fair sharing). Both runs must have the same tiling: on a small LMEM (910B: 512 KB) the
// second set of buffers forces a smaller automatic kv tile, and that capacity trade-off is not
// what this property is about (docs/backends/sim_tpu.md, "Assumptions and limits"). So the 910B
// grid pins kv_tile_tokens to the largest tile that fits the strategy with two buffers (for auto:
// one that fits all three).
TEST_CASE("sim_tpu double buffering is never slower than single buffering", "[sim_tpu]") {
  struct Machine {
    const char* file;
    std::map<std::string, int64_t> kv_tile_tokens;  // per partition; 0 = automatic
  };
  const std::vector<Machine> machines = {
      {"sc11_fp300.json", {{"heads", 0}, {"batch", 0}, {"sequence", 0}, {"auto", 0}}},
      {"ascend910b.json", {{"heads", 128}, {"batch", 64}, {"sequence", 32}, {"auto", 32}}}};
  for (const Machine& m : machines)
    for (const char* partition : {"heads", "batch", "sequence", "auto"}) {
      bool wins_big = false;  // double buffering must pay off somewhere, not merely tie
      for (int64_t batch : {1, 8, 32, 128})
        for (int64_t len : {100, 512, 2048, 8192}) {
          nlohmann::json config = shipped_config(m.file), db_report, sb_report;
          config["kernel"]["partition"] = partition;
          config["kernel"]["kv_tile_tokens"] = m.kv_tile_tokens.at(partition);
          config["kernel"]["double_buffer"] = true;
          const double db = simulated_seconds(config, deepseek(batch), len, &db_report);
          config["kernel"]["double_buffer"] = false;
          const double sb = simulated_seconds(config, deepseek(batch), len, &sb_report);
          INFO(m.file << ' ' << partition << " b=" << batch << " len=" << len << " double=" << db << " single=" << sb
                      << " (" << db_report["strategy"] << " vs " << sb_report["strategy"] << ")");
          REQUIRE(db_report["kv_tile_tokens"] == sb_report["kv_tile_tokens"]);
          REQUIRE(db_report["l2_chunk_tokens"] == sb_report["l2_chunk_tokens"]);
          CHECK(db <= sb * (1 + 1e-9));  // floating-point noise only
          if (db < sb * 0.95) wins_big = true;
        }
      INFO(m.file << ' ' << partition);
      CHECK(wins_big);
    }
}

TEST_CASE("sim_tpu latency does not decrease with length or batch", "[sim_tpu]") {
  for (const char* partition : {"heads", "batch", "sequence", "auto"}) {
    double last = 0;
    for (int64_t len : {1, 64, 300, 1024, 4096, 9000}) {
      const double t = simulated_seconds(sc11(partition, true), deepseek(4), len);
      INFO(partition << " len=" << len << " t=" << t << " previous=" << last);
      CHECK(t >= last * (1 - 1e-9));
      last = t;
    }
    last = 0;
    for (int64_t batch : {1, 2, 8, 9, 32, 128}) {
      const double t = simulated_seconds(sc11(partition, true), deepseek(batch), 512);
      INFO(partition << " batch=" << batch << " t=" << t << " previous=" << last);
      CHECK(t >= last * (1 - 1e-9));
      last = t;
    }
  }
}

TEST_CASE("sim_tpu moves the analytic number of bytes", "[sim_tpu]") {
  // Latent, h_kv = 1, bf16: every tensor-parallel rank gathers each sequence once (DDR -> L2),
  // its cores read the chunks they need (L2 -> LMEM), queries come in once per core that needs
  // them, outputs and lse go back once.
  const int64_t batch = 12, h_q = 128, tp = 4, cores = 8, row = 576 * 2;
  const std::vector<int32_t> lens = {0, 1, 500, 2048, 3000, 64, 65, 777, 10, 4096, 2, 129};
  int64_t tokens = 0;
  for (int32_t l : lens) tokens += l;
  for (const char* partition : {"heads", "batch", "sequence"}) {
    nlohmann::json config = sc11(partition, true);
    config["kernel"]["timing_only"] = true;
    HostInputs in = sim_tpu_test::timing_inputs(deepseek(batch), lens);
    auto o = sim_tpu_test::run_once(config, in);
    const auto& bytes = o.report["bytes"];
    const int64_t tile = o.report["kv_tile_tokens"].get<int64_t>();
    const double kv = static_cast<double>(tp * tokens * row);
    double query = static_cast<double>(batch * h_q * 576 * 2), partial = 0, l2_read = 0;
    const int64_t heads_per_rank = h_q / tp;
    if (std::string(partition) == "heads") {
      l2_read = kv * static_cast<double>(std::min(cores, heads_per_rank));
    } else {
      l2_read = kv;
    }
    if (std::string(partition) == "sequence") {
      query = 0;
      for (int32_t l : lens) {
        const int64_t per_core = (l + cores - 1) / cores;
        const int64_t slice = std::max<int64_t>(tile, (per_core + tile - 1) / tile * tile);
        const int64_t slices = std::max<int64_t>(1, (l + slice - 1) / slice);
        query += static_cast<double>(slices * h_q * 576 * 2);
        if (slices > 1) partial += static_cast<double>(slices * h_q * (512 + 1) * 4);
      }
    }
    INFO(partition);
    CHECK(bytes["ddr_read"].get<double>() == Approx(kv + query).epsilon(1e-12));
    CHECK(bytes["ddr_written"].get<double>() == Approx(static_cast<double>(batch * h_q * (512 * 2 + 4))).epsilon(1e-12));
    CHECK(bytes["l2_written"].get<double>() == Approx(kv + partial).epsilon(1e-12));
    CHECK(bytes["l2_read"].get<double>() == Approx(l2_read + partial).epsilon(1e-12));
  }
}

TEST_CASE("sim_tpu trace: one lane per engine, events of a lane never overlap", "[sim_tpu]") {
  for (const char* partition : {"heads", "batch", "sequence"}) {
    const std::string path = "sim_tpu_trace_test_" + std::string(partition) + ".json";
    nlohmann::json config = sc11(partition, true);
    config["trace_file"] = path;
    const double t = simulated_seconds(config, deepseek(3), 3000);
    std::ifstream in(path);
    REQUIRE(in.good());
    nlohmann::json trace = nlohmann::json::parse(in);
    std::map<std::pair<int, int>, std::vector<std::pair<double, double>>> lanes;
    std::map<std::pair<int, int>, std::string> names;
    for (const auto& e : trace["traceEvents"]) {
      if (e["ph"] == "M" && e["name"] == "thread_name") names[{e["pid"].get<int>(), e["tid"].get<int>()}] = e["args"]["name"];
      if (e["ph"] != "X") continue;
      lanes[{e["pid"].get<int>(), e["tid"].get<int>()}].push_back({e["ts"].get<double>(), e["ts"].get<double>() + e["dur"].get<double>()});
    }
    REQUIRE(!lanes.empty());
    double last_end = 0;
    for (auto& [lane, events] : lanes) {
      REQUIRE(names.count(lane) == 1);
      std::sort(events.begin(), events.end());
      for (size_t i = 1; i < events.size(); ++i) {
        INFO(partition << " lane " << names[lane] << " event " << i);
        CHECK(events[i].first >= events[i - 1].second - 1e-3);  // trace times are rounded to 0.1 ns
      }
      last_end = std::max(last_end, events.back().second);
    }
    // ts and dur are each printed to 0.1 ns (1e-4 us), so their sum is within 2e-4 us.
    CHECK(std::abs(last_end - t * 1e6) <= 2e-4);
    std::remove(path.c_str());
  }
}

TEST_CASE("sim_tpu auto keeps the fastest strategy and says why", "[sim_tpu]") {
  for (int64_t batch : {1, 64}) {
    nlohmann::json report;
    const double t = simulated_seconds(sc11("auto", true), deepseek(batch), 2048, &report);
    double best = 1e30;
    for (const auto& c : report["candidates"])
      if (c.contains("latency_s")) best = std::min(best, c["latency_s"].get<double>());
    CHECK(t == Approx(best));
    CHECK(report["strategy_reason"].get<std::string>().find("auto") != std::string::npos);
    CHECK(report["summary"].size() >= 5);
  }
}
