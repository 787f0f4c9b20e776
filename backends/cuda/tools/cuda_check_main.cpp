// mla_cuda_check: correctness of the cuda backend on the GPU machine.
//   mla_cuda_check grid  CONFIG [--max-cases N] [--max-len L] [--seed S] [--hopper-shapes]
//                        [--kv-formats F1,F2,...]
//                        CPU float64 reference over the DESIGN 7 grid (plus absorb cases); with
//                        --hopper-shapes only page 64 / h_kv 1 cases, bf16 and fp16 (latent, and 5 absorb);
//                        with --kv-formats the cases take these KV formats in turn (quantized ones are
//                        also checked against the unquantized values within the format's tolerance)
//   mla_cuda_check graph CONFIG                                            CUDA graph replay == direct call
// Every case prints one line (a repro); the exit status is the number of failures (capped).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "device_inputs.hpp"
#include "mla/compare.hpp"
#include "mla/error.hpp"
#include "mla/reference.hpp"
#include "mla/registry.hpp"

using namespace mla;
using mla::cuda_tools::DeviceTensors;

namespace {

struct Case {
  Problem p;
  InputSpec spec;
  std::string lengths;
};

std::string describe(const Case& c) {
  char buf[300];
  std::snprintf(buf, sizeof buf, "%sb=%lld s_q=%lld h_q=%lld h_kv=%lld page=%lld causal=%d %s kv=%s lengths=%s",
                c.p.variant == Variant::absorb ? "absorb " : "",
                (long long)c.p.batch, (long long)c.p.s_q, (long long)c.p.h_q, (long long)c.p.h_kv,
                (long long)c.p.page_size, c.p.causal ? 1 : 0, dtype_name(c.p.dtype), kv_format_name(c.p.kv_format),
                c.lengths.c_str());
  return buf;
}

// The DESIGN 7 grid, sampled: every combination of (b, s_q, h_q, h_kv, causal, page, dtype) is
// enumerated and every `stride`-th one taken, so every value of every axis appears; each case
// draws its lengths from {0, 1, 20, 63, 64, 65, 140, max_len} (rotated per sequence) or varlen.
// hopper_only: the shapes the Hopper kernels take (bf16 or fp16, page 64, h_kv 1, latent), every other
// axis as in the full grid plus h_q 24 and 32 (the narrow kernel's 32-row shape, padded and full).
std::vector<Case> make_grid(int max_cases, int64_t max_len, uint64_t seed, bool hopper_only) {
  const int64_t bs[] = {1, 2, 6, 64, 128};
  const int64_t sqs[] = {1, 2, 4};
  const std::vector<int64_t> hqs =
      hopper_only ? std::vector<int64_t>{1, 3, 16, 24, 32, 64, 128} : std::vector<int64_t>{1, 3, 16, 64, 128};
  const std::vector<int64_t> hkvs = hopper_only ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 2};
  const std::vector<int64_t> pages = hopper_only ? std::vector<int64_t>{64} : std::vector<int64_t>{64, 1, 16, 128};
  const std::vector<DType> dts = {DType::bf16, DType::fp16};
  const std::vector<int32_t> lens = {0, 1, 20, 63, 64, 65, 140, static_cast<int32_t>(max_len)};
  std::vector<Case> all;
  for (int64_t b : bs)
    for (int64_t sq : sqs)
      for (int64_t hq : hqs)
        for (int64_t hkv : hkvs)
          for (int causal = 0; causal < 2; ++causal)
            for (int64_t page : pages)
              for (DType dt : dts) {
                if (hq % hkv) continue;
                Case c;
                c.p.batch = b;
                c.p.s_q = sq;
                c.p.h_q = hq;
                c.p.h_kv = hkv;
                c.p.causal = causal != 0;
                c.p.page_size = page;
                c.p.dtype = dt;
                c.p.kv_format = *mla::plain_kv_format(dt);
                all.push_back(c);
              }
  const size_t stride = std::max<size_t>(1, all.size() / static_cast<size_t>(std::max(max_cases, 1)));
  std::vector<Case> out;
  for (size_t k = 0; k < all.size() && static_cast<int>(out.size()) < max_cases; k += stride) {
    Case c = all[k];
    const size_t n = out.size();
    c.spec.seed = seed + n;
    const int mode = static_cast<int>(n % 3);
    // Keep the float64 reference affordable: long lengths only where rows are few.
    const int64_t rows = c.p.batch * c.p.s_q * c.p.h_q;
    const int32_t long_len = rows > 4096 ? 300 : static_cast<int32_t>(max_len);
    if (mode == 0) {  // the edge lengths, rotated per sequence
      for (int64_t i = 0; i < c.p.batch; ++i) {
        int32_t L = lens[static_cast<size_t>((i + n) % lens.size())];
        c.spec.seqlens.push_back(L == max_len ? long_len : L);
      }
      c.lengths = "edge-cycle";
    } else if (mode == 1) {  // one length for all
      int32_t L = lens[(n / 3) % lens.size()];
      c.spec.seqlens.assign(static_cast<size_t>(c.p.batch), L == max_len ? long_len : L);
      c.lengths = std::to_string(c.spec.seqlens[0]);
    } else {
      c.spec.seqlen = std::min<int64_t>(long_len, 700);
      c.spec.varlen = true;
      c.lengths = "varlen~" + std::to_string(c.spec.seqlen);
    }
    out.push_back(c);
  }
  // The absorb variant (DESIGN 2.2): a few shapes through the cuBLAS projections.
  struct A { int64_t b, sq, hq, hkv, page; bool causal; DType dt; int32_t len; bool varlen; };
  const A absorb[] = {{2, 1, 16, 1, 64, false, DType::bf16, 300, false},
                      {3, 2, 128, 1, 64, true, DType::bf16, 0, false},
                      {1, 1, 3, 1, 16, false, DType::fp16, 140, false},
                      {64, 1, 16, 1, 64, false, DType::bf16, 200, true},
                      {6, 4, 16, 2, 1, true, DType::fp16, 0, false},
                      {2, 1, 128, 1, 64, false, DType::bf16, static_cast<int32_t>(max_len), false}};
  for (const A& x : absorb) {
    if (hopper_only && (x.page != 64 || x.hkv != 1)) continue;
    Case c;
    c.p.variant = Variant::absorb;
    c.p.batch = x.b;
    c.p.s_q = x.sq;
    c.p.h_q = x.hq;
    c.p.h_kv = x.hkv;
    c.p.page_size = x.page;
    c.p.causal = x.causal;
    c.p.dtype = x.dt;
    c.p.kv_format = *mla::plain_kv_format(x.dt);
    c.spec.seed = seed + 1000 + out.size();
    if (x.varlen) {
      c.spec.seqlen = x.len;
      c.spec.varlen = true;
      c.lengths = "varlen~" + std::to_string(x.len);
    } else if (x.len > 0) {
      c.spec.seqlens.assign(static_cast<size_t>(x.b), x.len);
      c.lengths = std::to_string(x.len);
    } else {
      for (int64_t i = 0; i < x.b; ++i) c.spec.seqlens.push_back(lens[static_cast<size_t>(i % lens.size())]);
      c.lengths = "edge-cycle";
    }
    if (static_cast<int>(out.size()) < max_cases + 6) out.push_back(c);
  }
  return out;
}

int run_grid(const std::string& config, int max_cases, int64_t max_len, uint64_t seed, bool hopper_only,
             const std::vector<KvFormat>& formats) {
  auto device = open_device_from_file(config);
  int failures = 0, count = 0;
  double worst_l2 = 0, worst_lse = 0, worst_quant_l2 = 0;
  for (Case c : make_grid(max_cases, max_len, seed, hopper_only)) {
    if (!formats.empty()) c.p.kv_format = formats[static_cast<size_t>(count) % formats.size()];
    ++count;
    try {
      HostInputs in = make_random_inputs(c.p, c.spec);
      auto plan = device->plan(in.problem);
      DeviceTensors store(*device);
      RunArgs dev = upload_inputs(store, in, nullptr);
      auto schedule = plan->schedule(dev.cache_seqlens, nullptr);
      RunOptions opt;
      opt.validate_indices = true;
      plan->run(dev, *schedule, nullptr, opt);
      device->synchronize(nullptr);
      HostInputs got = in;  // same shapes; overwritten by the download
      got.out = HostTensor(in.out.view().dtype, {c.p.batch, c.p.s_q, c.p.h_q, c.p.out_width()});
      got.lse = HostTensor(DType::fp32, {c.p.batch, c.p.h_q, c.p.s_q});
      store.download(got.out, dev.out, nullptr);
      store.download(got.lse, dev.lse, nullptr);
      ReferenceOutput ref = reference_decode(in.problem, in.args());
      Comparison cmp = compare_to_reference(in.problem, ref, got.out.view(), got.lse.view());
      worst_l2 = std::max(worst_l2, cmp.rel_l2_error);
      worst_lse = std::max(worst_lse, cmp.lse_max_abs_error);
      bool passed = cmp.passed;
      std::string quant;
      if (is_quantized(c.p.kv_format)) {  // the format's own error, against the values before quantization
        const HostInputs plain = in.unquantized();
        const Comparison q = compare_to_reference(in.problem, reference_decode(plain.problem, plain.args()),
                                                  got.out.view(), got.lse.view(), quantization_tolerance(in.problem));
        worst_quant_l2 = std::max(worst_quant_l2, q.rel_l2_error);
        passed = passed && q.passed;
        quant = " | vs unquantized: " + q.summary();
      }
      std::printf("%s %-4s %s | %s%s | kernel %s\n", passed ? "PASS" : "FAIL", "", describe(c).c_str(),
                  cmp.summary().c_str(), quant.c_str(), plan->kernel_name().c_str());
      if (!passed) ++failures;
    } catch (const Error& e) {
      ++failures;
      std::printf("FAIL %s | error: %s\n", describe(c).c_str(), e.what());
    }
    std::fflush(stdout);
  }
  std::printf("grid: %d cases, %d failed; worst rel_l2 %.3g, worst lse abs %.3g, worst quantization rel_l2 %.3g\n",
              count, failures, worst_l2, worst_lse, worst_quant_l2);
  return std::min(failures, 100);
}

// Captures schedule + run in a CUDA graph, replays it and compares bit-for-bit with a direct call.
int run_graph_case(const std::string& config, KvFormat format, int64_t s_q, int64_t h_q) {
  auto device = open_device_from_file(config);
  Problem p;
  p.kv_format = format;
  p.batch = 6;
  p.s_q = s_q;
  p.h_q = h_q;
  p.causal = s_q > 1;
  InputSpec spec;
  spec.seqlens = {0, 1, 65, 777, 4096, 2000};
  spec.seed = 4242;
  HostInputs in = make_random_inputs(p, spec);
  auto plan = device->plan(in.problem);
  DeviceTensors store(*device);
  RunArgs dev = upload_inputs(store, in, nullptr);
  cudaStream_t stream = nullptr;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    std::printf("FAIL graph: cudaStreamCreate\n");
    return 1;
  }
  // Direct call.
  { auto s = plan->schedule(dev.cache_seqlens, stream); plan->run(dev, *s, stream); device->synchronize(stream); }
  HostTensor direct_out(p.dtype, {p.batch, p.s_q, p.h_q, p.d_v()}), direct_lse(DType::fp32, {p.batch, p.h_q, p.s_q});
  store.download(direct_out, dev.out, stream);
  store.download(direct_lse, dev.lse, stream);
  // Poison the outputs again, capture, replay.
  device->copy(dev.out.data, in.out.data(), in.out.bytes(), CopyKind::host_to_device, stream);
  device->copy(dev.lse.data, in.lse.data(), in.lse.bytes(), CopyKind::host_to_device, stream);
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::unique_ptr<Schedule> captured;
  bool ok = cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal) == cudaSuccess;
  std::string err;
  try {
    captured = plan->schedule(dev.cache_seqlens, stream);
    plan->run(dev, *captured, stream);
  } catch (const Error& e) {
    err = e.what();
    ok = false;
  }
  ok = (cudaStreamEndCapture(stream, &graph) == cudaSuccess) && ok;
  ok = ok && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
  for (int i = 0; ok && i < 3; ++i) ok = cudaGraphLaunch(exec, stream) == cudaSuccess;
  ok = ok && cudaStreamSynchronize(stream) == cudaSuccess;
  if (!ok) {
    std::printf("FAIL graph: capture/replay failed %s %s\n", err.c_str(), cudaGetErrorString(cudaGetLastError()));
    return 1;
  }
  HostTensor g_out(p.dtype, {p.batch, p.s_q, p.h_q, p.d_v()}), g_lse(DType::fp32, {p.batch, p.h_q, p.s_q});
  store.download(g_out, dev.out, stream);
  store.download(g_lse, dev.lse, stream);
  const bool same = std::memcmp(g_out.data(), direct_out.data(), g_out.bytes()) == 0 &&
                    std::memcmp(g_lse.data(), direct_lse.data(), g_lse.bytes()) == 0;
  ReferenceOutput ref = reference_decode(in.problem, in.args());
  Comparison cmp = compare_to_reference(in.problem, ref, g_out.view(), g_lse.view());
  std::printf("%s graph (%s, s_q %lld h_q %lld, kernel %s): replay %s direct call (bitwise); vs reference: %s\n",
              same && cmp.passed ? "PASS" : "FAIL", kv_format_name(format), static_cast<long long>(s_q),
              static_cast<long long>(h_q), plan->kernel_name().c_str(),
              same ? "==" : "!=", cmp.summary().c_str());
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  captured.reset();
  cudaStreamDestroy(stream);
  return same && cmp.passed ? 0 : 1;
}

// Three shapes: s_q 2 x h_q 128 (the Hopper kernel's row tiles), s_q 1 x h_q 16 and 32 (the
// narrow kernel's two shapes, for the 8-bit formats it reads).
int run_graph(const std::string& config, KvFormat format) {
  return run_graph_case(config, format, 2, 128) + run_graph_case(config, format, 1, 16) +
         run_graph_case(config, format, 1, 32);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: mla_cuda_check grid|graph CONFIG [--max-cases N] [--max-len L] [--seed S] [--hopper-shapes]\n"
                 "                      [--kv-formats F1,F2,...]  (graph: [--kv-format F])\n");
    return 2;
  }
  const std::string mode = argv[1], config = argv[2];
  int max_cases = 150;
  int64_t max_len = 4096;
  uint64_t seed = 1;
  bool hopper_only = false;
  std::vector<KvFormat> formats;
  for (int i = 3; i < argc; ++i)
    if (std::string(argv[i]) == "--hopper-shapes") hopper_only = true;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--hopper-shapes") { --i; continue; }
    if (k == "--max-cases") max_cases = std::stoi(argv[i + 1]);
    else if (k == "--max-len") max_len = std::stoll(argv[i + 1]);
    else if (k == "--seed") seed = std::stoull(argv[i + 1]);
    else if (k == "--kv-formats" || k == "--kv-format") {
      std::string list = argv[i + 1];
      for (size_t at = 0; at <= list.size();) {
        const size_t comma = std::min(list.find(',', at), list.size());
        const std::string name = list.substr(at, comma - at);
        const auto f = parse_kv_format(name);
        if (!f) {
          std::fprintf(stderr, "unknown KV format '%s' (known: %s)\n", name.c_str(), kv_format_names().c_str());
          return 2;
        }
        formats.push_back(*f);
        at = comma + 1;
      }
    }
  }
  try {
    if (mode == "grid") return run_grid(config, max_cases, max_len, seed, hopper_only, formats);
    if (mode == "graph") return run_graph(config, formats.empty() ? KvFormat::bf16 : formats.front());
  } catch (const Error& e) {
    std::printf("FAIL %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
