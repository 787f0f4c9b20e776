// The CPU performance bar of ANCHORS.md, measured in one run: the cpu backend's fast path
// against OpenBLAS sgemm at the GEMM shapes of the same decode (per sequence: scores
// Q[rows x d_qk] . K^T and output P[rows x len] . V). Prints both GFLOP/s and the ratio.
// --kv-format runs the mla side on a cache of that format (the sgemm side is always fp32).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cpu backend vs OpenBLAS sgemm at the matching GEMM shapes"};
  int64_t batch = 8, heads = 128, seqlen = 4096;
  int iters = 7, warmup = 2;
  std::string json, isa = "auto", kv_format = "bf16";
  app.add_option("--batch", batch);
  app.add_option("--heads", heads);
  app.add_option("--seqlen", seqlen);
  app.add_option("--iters", iters);
  app.add_option("--warmup", warmup);
  app.add_option("--json", json, "Write the figures as JSON here");
  app.add_option("--isa", isa, "cpu.isa for the mla side: auto, avx512_bf16, portable or a Highway target (avx2, ...)");
  app.add_option("--kv-format", kv_format, "KV-cache format of the mla side: " + mla::kv_format_names());
  CLI11_PARSE(app, argc, argv);

  try {
    mla::Problem p;
    p.batch = batch;
    p.h_q = heads;
    const std::optional<mla::KvFormat> format = mla::parse_kv_format(kv_format);
    if (!format) throw std::invalid_argument("--kv-format: expected one of " + mla::kv_format_names() + ", got " + kv_format);
    p.kv_format = *format;
    mla::InputSpec spec;
    spec.seqlen = seqlen;
    mla::HostInputs in = mla::make_random_inputs(p, spec);
    nlohmann::json config = mla::default_config();
    config["cpu"]["isa"] = isa;
    auto device = mla::open_device(config);
    auto plan = device->plan(in.problem);
    auto schedule = plan->schedule(in.cache_seqlens.view());
    const mla::RunArgs args = in.args();
    const double t_mla = time_median(warmup, iters, [&] { plan->run(args, *schedule); });

    // The same arithmetic as two fp32 GEMMs per sequence on contiguous operands.
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
    const double flops = mla::anchor_flops(in.problem, static_cast<double>(seqlen));
    const double mla_gflops = flops / t_mla / 1e9, blas_gflops = flops / t_blas / 1e9;
    std::printf("| what | time (ms) | GFLOP/s |\n");
    std::printf("| mla cpu (%s, %s cache) | %.2f | %.1f |\n", plan->kernel_name().c_str(), kv_format.c_str(), t_mla * 1e3,
                mla_gflops);
    std::printf("| OpenBLAS sgemm, same GEMM shapes | %.2f | %.1f |\n", t_blas * 1e3, blas_gflops);
    std::printf("ratio mla / OpenBLAS: %.2fx (target >= 1.0)\n", mla_gflops / blas_gflops);
    if (!json.empty()) {
      std::ofstream(json) << nlohmann::json{{"problem", in.problem.describe()},
                                            {"mla_kernel", plan->kernel_name()},
                                            {"kv_format", kv_format},
                                            {"mla_seconds", t_mla},
                                            {"mla_gflops", mla_gflops},
                                            {"openblas_seconds", t_blas},
                                            {"openblas_gflops", blas_gflops},
                                            {"ratio", mla_gflops / blas_gflops}}
                                 .dump(2)
                          << "\n";
    }
    return mla_gflops >= blas_gflops ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu_vs_openblas: %s\n", e.what());
    return 2;
  }
}
