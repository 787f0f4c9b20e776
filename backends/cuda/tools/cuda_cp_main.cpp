// mla_cuda_cp: context parallelism across the GPUs of one machine, one rank per GPU, over NCCL
// (loaded at run time: MLA_NCCL_LIBRARY, else libnccl.so.2).
//   mla_cuda_cp CONFIG check [--ranks N]
//       every rank runs its shard (context_shard) of small random problems on its GPU and the
//       NCCL merge, by each exchange (context_parallel.exchange all_gather and all_reduce);
//       each rank's out/lse against the float64 reference of the unsplit problem, and all ranks
//       bit-equal. Exit status: the number of failures.
//   mla_cuda_cp CONFIG bench [--ranks N] [--iters N] [--json OUT]
//       the multi-GPU rows (b1 h128 s_q 1/2 at 256k and 1M, b32 h128 32k): one GPU running the
//       whole problem against N GPUs each running 1/N of every sequence plus the merge, by each
//       exchange; median step time (CUDA events on each rank's stream), the slowest rank's (the
//       merge's collectives keep the ranks in step). Each step is timed two ways: launched call
//       by call ("calls"), and captured once into a CUDA graph and replayed ("graph", how a
//       serving loop launches it); the 1-GPU step is timed both ways too.
// CONFIG's cuda.device_index is replaced by the rank, its context_parallel.exchange by the
// exchange being run.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "captured_graph.hpp"
#include "device_inputs.hpp"
#include "event_timing.hpp"
#include "mla/compare.hpp"
#include "mla/context_parallel.hpp"
#include "mla/error.hpp"
#include "mla/inputs.hpp"
#include "mla/reference.hpp"
#include "mla/registry.hpp"

using namespace mla;

namespace {

void cuda_ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// ncclCommInitAll over devices 0..n-1, through the NCCL the process can load.
struct NcclComms {
  void* lib = nullptr;
  int (*destroy)(void*) = nullptr;
  std::vector<void*> comms;
  std::string version;
  explicit NcclComms(int n) {
    const char* env = std::getenv("MLA_NCCL_LIBRARY");
    lib = dlopen(env && *env ? env : "libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) throw std::runtime_error(std::string("NCCL cannot be loaded (set MLA_NCCL_LIBRARY): ") + dlerror());
    auto init_all = reinterpret_cast<int (*)(void**, int, const int*)>(dlsym(lib, "ncclCommInitAll"));
    auto get_version = reinterpret_cast<int (*)(int*)>(dlsym(lib, "ncclGetVersion"));
    destroy = reinterpret_cast<int (*)(void*)>(dlsym(lib, "ncclCommDestroy"));
    if (!init_all || !destroy) throw std::runtime_error("NCCL lacks ncclCommInitAll / ncclCommDestroy");
    int v = 0;
    if (get_version && get_version(&v) == 0) version = std::to_string(v);
    comms.assign(static_cast<size_t>(n), nullptr);
    std::vector<int> devices(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) devices[static_cast<size_t>(i)] = i;
    if (init_all(comms.data(), n, devices.data()) != 0) throw std::runtime_error("ncclCommInitAll failed");
  }
  ~NcclComms() {
    for (void* c : comms)
      if (c) destroy(c);
  }
};


std::unique_ptr<Device> open_rank(const nlohmann::json& config, int rank,
                                  ContextExchange exchange = ContextExchange::all_gather) {
  nlohmann::json c = config;
  c["cuda"]["device_index"] = rank;
  c["context_parallel"]["exchange"] = context_exchange_name(exchange);
  return open_device(c);
}

// The ways a step is launched for timing.
enum class Launch { calls, graph };
constexpr Launch kLaunches[] = {Launch::calls, Launch::graph};
const char* launch_name(Launch l) { return l == Launch::graph ? "graph" : "calls"; }

// Median time of `step` on `stream`, launched the `launch` way (graph: captured once here).
template <typename Step>
double time_step(Launch launch, Step&& step, cudaStream_t stream, int iters) {
  if (launch == Launch::calls) return cuda_tools::median_us(step, stream, 3, iters);
  cuda_tools::CapturedGraph graph(stream, step);
  return cuda_tools::median_us([&] { graph.launch(); }, stream, 3, iters);
}

// Runs `fn(rank)` on one thread per rank; rethrows the first failure with its rank.
template <typename Fn>
void on_ranks(int n, Fn&& fn) {
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r)
    if (!errors[static_cast<size_t>(r)].empty())
      throw std::runtime_error("rank " + std::to_string(r) + ": " + errors[static_cast<size_t>(r)]);
}

int run_check(const nlohmann::json& config, int n, NcclComms& nccl) {
  int failures = 0;
  for (ContextExchange exchange : kContextExchanges)
    for (int64_t s_q : {1, 2})
      for (int64_t h_q : {16, 128}) {
        Problem p;
        p.batch = 3;
        p.s_q = s_q;
        p.h_q = h_q;
        p.causal = s_q > 1;
        InputSpec spec;
        spec.seqlens = {0, 300, 5000};
        spec.seed = static_cast<uint64_t>(31 + s_q * 7 + h_q);
        const HostInputs full = make_random_inputs(p, spec);
        std::vector<HostInputs> shards;
        for (int r = 0; r < n; ++r) shards.push_back(context_shard(full, r, n));
        on_ranks(n, [&](int r) {
          auto dev = open_rank(config, r, exchange);
          HostInputs& in = shards[static_cast<size_t>(r)];
          cuda_tools::DeviceTensors store(*dev);
          RunArgs a = cuda_tools::upload_inputs(store, in, nullptr);
          cudaStream_t stream = nullptr;
          cuda_ok(cudaSetDevice(r), "cudaSetDevice");
          cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
          auto plan = dev->plan(in.problem);
          auto schedule = plan->schedule(a.cache_seqlens, stream);
          plan->run(a, *schedule, stream);
          auto comm = dev->wrap_native_communicator(nccl.comms[static_cast<size_t>(r)]);
          dev->merge_context_parallel(full.problem, a.out, a.lse, *comm, stream);
          dev->synchronize(stream);
          store.download(in.out, a.out, nullptr);
          store.download(in.lse, a.lse, nullptr);
          cudaStreamDestroy(stream);
        });
        const ReferenceOutput ref = reference_decode(full.problem, full.args());
        for (int r = 0; r < n; ++r) {
          const HostInputs& in = shards[static_cast<size_t>(r)];
          const Comparison c = compare_to_reference(full.problem, ref, in.out.view(), in.lse.view());
          const bool same = std::memcmp(in.out.data(), shards[0].out.data(), in.out.bytes()) == 0 &&
                            std::memcmp(in.lse.data(), shards[0].lse.data(), in.lse.bytes()) == 0;
          std::printf("%s %s, %d ranks, rank %d, %s: %s; %s rank 0\n", c.passed && same ? "PASS" : "FAIL",
                      context_exchange_name(exchange), n, r, full.problem.describe().c_str(), c.summary().c_str(),
                      same ? "bit-equal to" : "DIFFERS from");
          if (!(c.passed && same)) ++failures;
        }
      }
  return failures;
}

struct Row {
  const char* label;
  int64_t batch, s_q, seqlen;
  double target;  // N-GPU time / 1-GPU time at most (2 ranks)
};

int run_bench(const nlohmann::json& config, int n, int iters, const std::string& json_path, NcclComms& nccl) {
  const Row rows[] = {{"b1 h128 256k", 1, 1, 262144, 0.55},   {"b1 h128 s_q2 256k", 1, 2, 262144, 0.55},
                      {"b1 h128 1M", 1, 1, 1048576, 0.55},    {"b1 h128 s_q2 1M", 1, 2, 1048576, 0.55},
                      {"b32 h128 32k", 32, 1, 32768, 0.6}};
  constexpr size_t kForms = std::size(kContextExchanges), kWays = std::size(kLaunches);
  std::printf("| row | exchange | launch | 1 GPU us | %d GPUs us | ratio | target | kernel |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- |\n",
              n);
  std::string json = "{\"ranks\":" + std::to_string(n) + ",\"nccl_version\":\"" + nccl.version + "\",\"rows\":[";
  bool first = true;
  for (const Row& row : rows) {
    Problem p;
    p.batch = row.batch;
    p.s_q = row.s_q;
    p.h_q = 128;
    p.causal = row.s_q > 1;
    p.page_size = 64;
    double one[kWays] = {};
    std::string kernel;
    {  // one GPU, the whole problem
      auto dev = open_rank(config, 0);
      cuda_ok(cudaSetDevice(0), "cudaSetDevice");
      cudaStream_t stream = nullptr;
      cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
      cuda_tools::DeviceTensors store(*dev);
      InputSpec spec;
      spec.seqlen = row.seqlen;
      spec.seed = 5;
      auto in = cuda_tools::make_bench_inputs(store, p, spec, stream);
      auto plan = dev->plan(in.problem);
      kernel = plan->kernel_name();
      auto schedule = plan->schedule(in.args.cache_seqlens, stream);
      for (size_t w = 0; w < kWays; ++w)
        one[w] = time_step(kLaunches[w], [&] { plan->run(in.args, *schedule, stream); }, stream, iters);
      cudaStreamDestroy(stream);
    }
    // n GPUs: 1/n of every sequence each, then the merge, by each exchange and each launch way.
    // Every rank times the same steps in the same order, so their collectives pair up.
    std::vector<double> times(kForms * kWays * static_cast<size_t>(n));
    auto at = [&](size_t form, size_t way, int r) -> double& {
      return times[(form * kWays + way) * static_cast<size_t>(n) + static_cast<size_t>(r)];
    };
    on_ranks(n, [&](int r) {
      std::unique_ptr<Device> devs[kForms];
      for (size_t f = 0; f < kForms; ++f) devs[f] = open_rank(config, r, kContextExchanges[f]);
      Device& dev = *devs[0];  // inputs and plan; the merge is each exchange's device
      cuda_ok(cudaSetDevice(r), "cudaSetDevice");
      cudaStream_t stream = nullptr;
      cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
      Problem shard = p;
      shard.causal = p.causal && r == n - 1;  // the newest tokens are on the last rank
      cuda_tools::DeviceTensors store(dev);
      InputSpec spec;
      spec.seqlen = row.seqlen / n;
      spec.seed = static_cast<uint64_t>(5 + r);
      auto in = cuda_tools::make_bench_inputs(store, shard, spec, stream);
      auto plan = dev.plan(in.problem);
      auto schedule = plan->schedule(in.args.cache_seqlens, stream);
      auto comm = dev.wrap_native_communicator(nccl.comms[static_cast<size_t>(r)]);
      for (size_t f = 0; f < kForms; ++f)
        for (size_t w = 0; w < kWays; ++w)
          at(f, w, r) = time_step(
              kLaunches[w],
              [&] {
                plan->run(in.args, *schedule, stream);
                devs[f]->merge_context_parallel(in.problem, in.args.out, in.args.lse, *comm, stream);
              },
              stream, iters);
      cudaStreamDestroy(stream);
    });
    for (size_t f = 0; f < kForms; ++f)
      for (size_t w = 0; w < kWays; ++w) {
        double many = 0;
        for (int r = 0; r < n; ++r) many = std::max(many, at(f, w, r));
        const char *form = context_exchange_name(kContextExchanges[f]), *way = launch_name(kLaunches[w]);
        std::printf("| %s | %s | %s | %.1f | %.1f | %.2f | <= %.2f | %s |\n", row.label, form, way, one[w], many,
                    many / one[w], row.target, kernel.c_str());
        char buf[512];
        std::snprintf(buf, sizeof buf,
                      "%s{\"row\":\"%s\",\"exchange\":\"%s\",\"launch\":\"%s\",\"one_gpu_us\":%.2f,"
                      "\"n_gpu_us\":%.2f,\"ratio\":%.4f,\"target\":%.2f}",
                      first ? "" : ",", row.label, form, way, one[w], many, many / one[w], row.target);
        json += buf;
        first = false;
      }
    std::fflush(stdout);
  }
  json += "]}\n";
  if (!json_path.empty()) std::ofstream(json_path) << json;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: mla_cuda_cp CONFIG check|bench [--ranks N] [--iters N] [--json OUT]\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each line out as it is printed, also into a file
  const std::string config_path = argv[1], mode = argv[2];
  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess) gpus = 0;
  int n = gpus, iters = 20;
  std::string json_path;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--ranks") n = std::stoi(argv[i + 1]);
    else if (k == "--iters") iters = std::stoi(argv[i + 1]);
    else if (k == "--json") json_path = argv[i + 1];
  }
  if (n < 2 || n > gpus) {
    std::printf("SKIP: context parallelism across GPUs needs 2 or more GPUs (this machine has %d, asked for %d)\n", gpus, n);
    return 0;
  }
  try {
    std::ifstream file(config_path);
    const nlohmann::json config = nlohmann::json::parse(file);
    NcclComms nccl(n);
    std::printf("NCCL %s, %d ranks\n", nccl.version.c_str(), n);
    if (mode == "check") return std::min(run_check(config, n, nccl), 100);
    if (mode == "bench") return run_bench(config, n, iters, json_path, nccl);
  } catch (const std::exception& e) {
    std::printf("FAIL %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
