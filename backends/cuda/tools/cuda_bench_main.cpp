// mla_cuda_bench: the ANCHORS.md benchmark table on the cuda backend, with the copy and
// matmul ceilings measured in the same run.
//   mla_cuda_bench CONFIG [--iters N] [--warmup N] [--json OUT] [--cases all|quick] [--case I[,J...]]
//                  [--dtype bf16|fp16]   (q, kv and out; FlashMLA's figures are bf16)
//                  [--kv-format F]       (the cache's format; default: the query dtype's 16-bit one)
//   (--case: only these rows of the table, 0-based; for profilers and A/B runs)
// Times plan->run (decode + combine; the schedule is made once per step and timed apart),
// median of N launches timed with CUDA events, one input set per case.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "anchors.hpp"  // cli/: the FlashMLA tables
#include "ceilings.hpp"
#include "device_inputs.hpp"
#include "event_timing.hpp"
#include "mla/error.hpp"
#include "mla/kv_format.hpp"
#include "mla/metrics.hpp"
#include "mla/registry.hpp"

using namespace mla;

namespace {

// The rows: FlashMLA's H200 table of `mla bench --anchors` (one copy of the figures for both
// tools). Triton (LightLLM's Triton MLA decode) was measured on the H100 only, on the rows of
// this table it shares with the H100 one.
const auto& kCases = mla::cli::kH200Cases;
double triton_us(int index) {
  switch (index) {
    case 1: return 1350;   // b128 h16 8k
    case 4: return 4881;   // b128 h128 8k
    case 9: return 825;    // b2 h128 32k
    case 10: return 865;   // b8 h16 64k
    default: return 0;     // not measured
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: mla_cuda_bench CONFIG [--iters N] [--warmup N] [--json OUT] [--cases all|quick] [--case I[,J...]] [--dtype bf16|fp16] [--kv-format F]\n");
    return 2;
  }
  const std::string config = argv[1];
  int iters = 50, warmup = 5;
  std::string json_path, which = "all";
  std::string only;  // comma-separated row indices; empty: all
  DType dtype = DType::bf16;
  std::string kv_format_name_arg;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--iters") iters = std::stoi(argv[i + 1]);
    else if (k == "--warmup") warmup = std::stoi(argv[i + 1]);
    else if (k == "--json") json_path = argv[i + 1];
    else if (k == "--cases") which = argv[i + 1];
    else if (k == "--case") only = "," + std::string(argv[i + 1]) + ",";
    else if (k == "--dtype") dtype = std::string(argv[i + 1]) == "fp16" ? DType::fp16 : DType::bf16;
    else if (k == "--kv-format") kv_format_name_arg = argv[i + 1];
  }
  std::optional<KvFormat> kv_format = kv_format_name_arg.empty() ? plain_kv_format(dtype) : parse_kv_format(kv_format_name_arg);
  if (!kv_format) {
    std::fprintf(stderr, "unknown KV format '%s' (known: %s)\n", kv_format_name_arg.c_str(), kv_format_names().c_str());
    return 2;
  }
  try {
    auto device = open_device_from_file(config);
    const double copy_gbps = cuda_tools::measure_copy_gbps();
    const double mm_tflops = cuda_tools::measure_matmul_tflops(8192);
    std::printf("ceilings: copy %.0f GB/s (read + write), bf16 8192^3 matmul %.0f TFLOP/s\n", copy_gbps, mm_tflops);
    cudaStream_t stream = nullptr;
    cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);

    std::string json = "{\"copy_gbps\":" + std::to_string(copy_gbps) + ",\"matmul_tflops\":" +
                       std::to_string(mm_tflops) + ",\"cases\":[";
    std::printf("| case | b | s_q | h_q | len | us | GB/s | TFLOP/s | vs FlashMLA | vs Triton | of copy | of matmul | sched us | kernel |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    bool first = true;
    for (int index = 0; index < static_cast<int>(std::size(kCases)); ++index) {
      const mla::cli::AnchorCase& c = kCases[index];
      if (which == "quick" && c.seqlen > 8192) continue;
      if (!only.empty() && only.find("," + std::to_string(index) + ",") == std::string::npos) continue;
      Problem p;
      p.batch = c.batch;
      p.s_q = c.s_q;
      p.h_q = c.heads;
      p.causal = c.causal;
      p.page_size = 64;
      p.dtype = dtype;
      p.kv_format = *kv_format;
      InputSpec spec;
      spec.seqlen = c.seqlen;
      spec.varlen = c.varlen;
      spec.seed = 11;
      cuda_tools::DeviceTensors store(*device);
      auto in = cuda_tools::make_bench_inputs(store, p, spec, stream);
      auto plan = device->plan(in.problem);
      auto schedule = plan->schedule(in.args.cache_seqlens, stream);
      const double sched_us = cuda_tools::median_us([&] { auto s = plan->schedule(in.args.cache_seqlens, stream); }, stream, 2, 10);
      const double us = cuda_tools::median_us([&] { plan->run(in.args, *schedule, stream); }, stream, warmup, iters);
      const double bytes = anchor_bytes(in.problem, in.mean_seqlen);
      const double flops = anchor_flops(in.problem, in.mean_seqlen);
      const double gbps = bytes / (us * 1e-6) / 1e9, tflops = flops / (us * 1e-6) / 1e12;
      const double vs_fm = c.flashmla_us / us;  // >1: faster than FlashMLA
      const double vs_tr = triton_us(index) > 0 ? triton_us(index) / us : 0;
      char tr[32] = "-";
      if (vs_tr > 0) std::snprintf(tr, sizeof tr, "%.2fx", vs_tr);
      std::printf("| %s | %lld | %lld | %lld | %s%lld | %.1f | %.0f | %.1f | %.2fx | %s | %.2f | %.2f | %.1f | %s |\n",
                  c.label, (long long)c.batch, (long long)c.s_q, (long long)c.heads, c.varlen ? "~" : "", (long long)c.seqlen,
                  us, gbps, tflops, vs_fm, tr, gbps / copy_gbps, tflops / mm_tflops, sched_us,
                  plan->kernel_name().c_str());
      std::fflush(stdout);
      char buf[768];
      std::snprintf(buf, sizeof buf,
                    "%s{\"case\":\"%s\",\"b\":%lld,\"s_q\":%lld,\"h_q\":%lld,\"len\":%lld,\"varlen\":%s,\"mean_len\":%.1f,"
                    "\"us\":%.2f,\"gbps\":%.1f,\"tflops\":%.2f,\"flashmla_us\":%.0f,\"triton_us\":%.0f,\"sched_us\":%.2f,"
                    "\"kernel\":\"%s\",\"dtype\":\"%s\",\"kv_format\":\"%s\",\"kv_bytes_per_token\":%lld}",
                    first ? "" : ",", c.label, (long long)c.batch, (long long)c.s_q, (long long)c.heads, (long long)c.seqlen,
                    c.varlen ? "true" : "false", in.mean_seqlen, us, gbps, tflops, c.flashmla_us, triton_us(index), sched_us,
                    plan->kernel_name().c_str(), dtype_name(dtype), kv_format_name(*kv_format),
                    (long long)kv_token_bytes(*kv_format, p.d_c, p.d_r));
      json += buf;
      first = false;
    }
    json += "]}\n";
    if (!json_path.empty()) std::ofstream(json_path) << json;
    cudaStreamDestroy(stream);
  } catch (const Error& e) {
    std::printf("bench failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
