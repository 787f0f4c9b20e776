// The CPU performance bar of ANCHORS.md, measured in one run: the cpu backend's fast path
// against OpenBLAS sgemm at the GEMM shapes of the same decode (per sequence: scores
// Q[rows x d_qk] . K^T and output P[rows x len] . V). Prints both GFLOP/s and the ratio.
// --kv-format runs the mla side on caches of the given formats (the sgemm side is always fp32).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "mla/inputs.hpp"
#include "mla/metrics.hpp"
#include "mla/mla.hpp"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double time_median(int warmup, int iters, F&& f) {
  std::vector<double> t;
  for (int k = 0; k < warmup + iters; ++k) {
    auto start = std::chrono::steady_clock::now();
    f();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (k >= warmup) t.push_back(s);
  }
  return median(t);
}

// One KV format on the mla side: its inputs, plan and the seconds of each timed run.
struct FormatRun {
  std::string name;
  mla::HostInputs inputs;
  std::unique_ptr<mla::Plan> plan;
  std::unique_ptr<mla::Schedule> schedule;
  std::vector<double> seconds;
};

std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cpu backend vs OpenBLAS sgemm at the matching GEMM shapes"};
  int64_t batch = 8, heads = 128, seqlen = 4096;
  int iters = 7, warmup = 2;
  std::string json, isa = "auto", kv_formats = "bf16";
  app.add_option("--batch", batch);
  app.add_option("--heads", heads);
  app.add_option("--seqlen", seqlen);
  app.add_option("--iters", iters);
  app.add_option("--warmup", warmup);
  app.add_option("--json", json, "Write the figures as JSON here");
  app.add_option("--isa", isa, "cpu.isa for the mla side: auto, avx512_bf16, portable or a Highway target (avx2, ...)");
  app.add_option("--kv-format", kv_formats,
                 "KV-cache format(s) of the mla side, comma separated (" + mla::kv_format_names() +
                     "); several are timed round-robin, one run of each in turn, so that they share the machine's load");
  CLI11_PARSE(app, argc, argv);

  try {
    nlohmann::json config = mla::default_config();
    config["cpu"]["isa"] = isa;
    auto device = mla::open_device(config);
    std::vector<FormatRun> runs;
    for (const std::string& name : split_commas(kv_formats)) {
      const std::optional<mla::KvFormat> format = mla::parse_kv_format(name);
      if (!format) throw std::invalid_argument("--kv-format: expected " + mla::kv_format_names() + ", got " + name);
      mla::Problem p;
      p.batch = batch;
      p.h_q = heads;
      p.kv_format = *format;
      mla::InputSpec spec;
      spec.seqlen = seqlen;
      FormatRun r{name, mla::make_random_inputs(p, spec), nullptr, nullptr, {}};
      r.plan = device->plan(r.inputs.problem);
      r.schedule = r.plan->schedule(r.inputs.cache_seqlens.view());
      runs.push_back(std::move(r));
    }
    for (int k = 0; k < warmup + iters; ++k)
      for (FormatRun& r : runs) {
        const mla::RunArgs args = r.inputs.args();
        const auto start = std::chrono::steady_clock::now();
        r.plan->run(args, *r.schedule);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (k >= warmup) r.seconds.push_back(s);
      }

    // The same arithmetic as two fp32 GEMMs per sequence on contiguous operands.
    const mla::Problem& p = runs.front().inputs.problem;
    const int64_t rows = heads, d_qk = p.d_qk(), d_v = p.d_v();
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    std::vector<float> q(static_cast<size_t>(rows * d_qk)), kv(static_cast<size_t>(seqlen * d_qk));
    std::vector<float> s(static_cast<size_t>(rows * seqlen)), o(static_cast<size_t>(rows * d_v));
    for (auto& x : q) x = normal(rng);
    for (auto& x : kv) x = normal(rng);
    const double t_blas = time_median(warmup, iters, [&] {
      for (int64_t i = 0; i < batch; ++i) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(seqlen),
                    static_cast<int>(d_qk), 1.0f, q.data(), static_cast<int>(d_qk), kv.data(), static_cast<int>(d_qk),
                    0.0f, s.data(), static_cast<int>(seqlen));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(d_v),
                    static_cast<int>(seqlen), 1.0f, s.data(), static_cast<int>(seqlen), kv.data(),
                    static_cast<int>(d_qk), 0.0f, o.data(), static_cast<int>(d_v));
      }
    });
    const double flops = mla::anchor_flops(p, static_cast<double>(seqlen));
    const double blas_gflops = flops / t_blas / 1e9;
    std::printf("| what | time (ms), median | fastest (ms) | GFLOP/s (median) |\n");
    nlohmann::json out{{"problem", p.describe()}, {"openblas_seconds", t_blas}, {"openblas_gflops", blas_gflops}};
    bool all_faster = true;
    for (const FormatRun& r : runs) {
      const double t = median(r.seconds), fastest = *std::min_element(r.seconds.begin(), r.seconds.end());
      const double gflops = flops / t / 1e9;
      all_faster = all_faster && gflops >= blas_gflops;
      std::printf("| mla cpu (%s, %s cache) | %.2f | %.2f | %.1f |\n", r.plan->kernel_name().c_str(), r.name.c_str(),
                  t * 1e3, fastest * 1e3, gflops);
      out["mla"].push_back({{"kv_format", r.name},
                            {"kernel", r.plan->kernel_name()},
                            {"seconds", t},
                            {"fastest_seconds", fastest},
                            {"gflops", gflops},
                            {"ratio", gflops / blas_gflops}});
    }
    std::printf("| OpenBLAS sgemm, same GEMM shapes | %.2f | | %.1f |\n", t_blas * 1e3, blas_gflops);
    for (const FormatRun& r : runs)
      std::printf("ratio mla (%s) / OpenBLAS: %.2fx (target >= 1.0)\n", r.name.c_str(),
                  flops / median(r.seconds) / 1e9 / blas_gflops);
    if (!json.empty()) std::ofstream(json) << out.dump(2) << "\n";
    return all_faster ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu_vs_openblas: %s\n", e.what());
    return 2;
  }
}
