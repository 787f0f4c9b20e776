// Properties of the timing model: lower bounds, double buffering, monotonicity, byte counts
// against the analytic count, and lanes whose events never overlap (read back from the trace).
#include <catch2/catch.hpp>

#include <algorithm>
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

// Known deviation (docs/backends/sim_tpu.md, "Assumptions and limits"): with max-min fair
// bandwidth sharing, double buffering's early query loads can take DDR bandwidth from the SDMA
// gather on the critical path, so at short lengths double buffering can lose up to ~2% (b=32,
// len=512, batch partition: 37.48 vs 37.19 us). The check allows 3% and also requires double
// buffering to win where overlap matters (long sequences).
TEST_CASE("sim_tpu double buffering is not slower than single buffering", "[sim_tpu]") {
  for (const char* partition : {"heads", "batch", "sequence", "auto"})
    for (int64_t batch : {1, 8, 32, 128})
      for (int64_t len : {100, 512, 2048, 5000}) {
        const double db = simulated_seconds(sc11(partition, true), deepseek(batch), len);
        const double sb = simulated_seconds(sc11(partition, false), deepseek(batch), len);
        INFO(partition << " b=" << batch << " len=" << len << " double=" << db << " single=" << sb);
        CHECK(db <= sb * 1.03);
        if (len >= 5000) CHECK(db < sb);
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
    CHECK(last_end * 1e-6 == Approx(t).epsilon(1e-6));
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
