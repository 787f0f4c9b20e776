// Context parallelism on one GPU: N ranks as threads sharing the GPU, each running its shard of
// every sequence's pages on the cuda backend, merged by the GPU merge through a loopback
// communicator (device-to-device copies between the ranks' buffers; its all-reduce goes through
// the host), by both exchanges (context_parallel.exchange). Every rank must hold the same bits,
// within tolerance of the float64 reference of the unsplit problem. Then the step (run + merge)
// of one rank captured in a CUDA graph, replayed bit-equal to the direct call, and the NCCL
// wrapper with a one-rank NCCL communicator, where NCCL can be loaded. Skips without a GPU.
#include <catch2/catch.hpp>

#ifdef MLA_TESTS_HAVE_CUDA
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <cuda_runtime.h>

#include "cuda/cuda_test_support.hpp"
#include "cuda/tools/captured_graph.hpp"
#include "mla/compare.hpp"
#include "mla/context_parallel.hpp"
#include "mla/inputs.hpp"
#include "mla/reference.hpp"
#include "mla/registry.hpp"
#include "test_support.hpp"

using namespace mla;
using namespace mla::testing;

namespace {


// The ranks run on threads, where Catch's assertions may not be used: a CUDA failure throws,
// and the test checks each rank's error text.
void cuda_ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

std::unique_ptr<Device> open_gpu(ContextExchange exchange) {
  return open_device(nlohmann::json{{"backend", "cuda"},
                                    {"name", "test gpu"},
                                    {"cuda", {{"device_index", 0}}},
                                    {"context_parallel", {{"exchange", context_exchange_name(exchange)}}}});
}

// A rank of ranks that share one GPU: the ranks swap their send pointers through an
// InProcessGroup (which also keeps them in step), then each copies every rank's buffer
// device-to-device into its own recv buffer. The all-reduce goes through the host: the group's
// (rank-order, the same bits everywhere). Synchronising, so not capturable.
class LoopbackRank final : public Communicator {
 public:
  LoopbackRank(InProcessGroup& group, int rank) : host_(group.communicator(rank)) {}
  [[nodiscard]] int rank() const override { return host_->rank(); }
  [[nodiscard]] int size() const override { return host_->size(); }
  void all_gather(const void* send, void* recv, size_t bytes, void* stream) override {
    auto* s = static_cast<cudaStream_t>(stream);
    cuda_ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");  // send is complete
    std::vector<const void*> sends(static_cast<size_t>(size()));
    host_->all_gather(&send, sends.data(), sizeof send, nullptr);
    for (size_t k = 0; k < sends.size(); ++k) {
      char* slot = static_cast<char*>(recv) + bytes * k;
      if (slot == sends[k]) continue;  // in place: this rank's slot already holds its send
      cuda_ok(cudaMemcpyAsync(slot, sends[k], bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
    }
    cuda_ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    const char done = 1;  // nobody's send changes while another rank still copies it
    std::vector<char> all(sends.size());
    host_->all_gather(&done, all.data(), 1, nullptr);
  }
  void all_reduce(const float* send, float* recv, size_t count, ReduceOp op, void* stream) override {
    auto* s = static_cast<cudaStream_t>(stream);
    std::vector<float> host(count);
    cuda_ok(cudaMemcpyAsync(host.data(), send, count * sizeof(float), cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
    cuda_ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    host_->all_reduce(host.data(), host.data(), count, op, nullptr);
    cuda_ok(cudaMemcpyAsync(recv, host.data(), count * sizeof(float), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
    cuda_ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }

 private:
  std::unique_ptr<Communicator> host_;
};

// Keeps a host copy of what every collective of `inner` delivered, in call order, for
// ReplayRank. It outlives `inner` (a rank thread's local), so rank and size are kept, not asked.
class RecordingRank final : public Communicator {
 public:
  explicit RecordingRank(Communicator& inner) : inner_(inner), rank_(inner.rank()), size_(inner.size()) {}
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  void all_gather(const void* send, void* recv, size_t bytes, void* stream) override {
    inner_.all_gather(send, recv, bytes, stream);
    record(recv, bytes * static_cast<size_t>(size()), stream);
  }
  void all_reduce(const float* send, float* recv, size_t count, ReduceOp op, void* stream) override {
    inner_.all_reduce(send, recv, count, op, stream);
    record(recv, count * sizeof(float), stream);
  }
  std::vector<std::vector<char>> received;

 private:
  void record(const void* recv, size_t bytes, void* stream) {
    std::vector<char> host(bytes);
    auto* s = static_cast<cudaStream_t>(stream);
    cuda_ok(cudaMemcpyAsync(host.data(), recv, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
    cuda_ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    received.push_back(std::move(host));
  }
  Communicator& inner_;  // valid only during the merge it records
  int rank_, size_;
};

// One rank whose collectives deliver, call by call, what a RecordingRank saw (device copies made
// up front): stream-ordered copies only, so a single thread can capture that rank's merge in a
// graph without the other ranks. The merge must make the same calls in the same order.
class ReplayRank final : public Communicator {
 public:
  ReplayRank(Device& dev, const RecordingRank& recorded) : dev_(dev), rank_(recorded.rank()), size_(recorded.size()) {
    for (const auto& r : recorded.received) {
      void* p = dev.allocate(r.size());
      dev.copy(p, r.data(), r.size(), CopyKind::host_to_device);
      buffers_.push_back({p, r.size()});
    }
  }
  ~ReplayRank() override {
    for (const auto& b : buffers_) dev_.deallocate(b.ptr);
  }
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  // Only the other ranks' slots: this rank's own slot must hold what the merge packed into it
  // (the in-place all-gather), so the replay checks the packing too.
  void all_gather(const void*, void* recv, size_t bytes, void* stream) override {
    const Buffer& b = next(bytes * static_cast<size_t>(size_));
    for (int k = 0; k < size_; ++k)
      if (k != rank_)
        cuda_ok(cudaMemcpyAsync(static_cast<char*>(recv) + k * bytes, static_cast<const char*>(b.ptr) + k * bytes, bytes,
                                cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream)),
                "cudaMemcpyAsync");
  }
  void all_reduce(const float*, float* recv, size_t count, ReduceOp, void* stream) override {
    deliver(recv, count * sizeof(float), stream);
  }

 private:
  struct Buffer {
    void* ptr;
    size_t bytes;
  };
  const Buffer& next(size_t bytes) {
    const Buffer& b = buffers_.at(next_++);  // throws when the merge makes more calls
    if (b.bytes != bytes) throw std::runtime_error("ReplayRank: the merge's collectives differ from the recorded ones");
    return b;
  }
  void deliver(void* recv, size_t bytes, void* stream) {
    const Buffer& b = next(bytes);
    cuda_ok(cudaMemcpyAsync(recv, b.ptr, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream)),
            "cudaMemcpyAsync");
  }
  Device& dev_;
  int rank_, size_;
  std::vector<Buffer> buffers_;
  size_t next_ = 0;
};

// One rank's shard uploaded to the GPU, its plan and schedule.
struct GpuRank {
  DeviceCopy q, kv, bt, lens, out, lse;
  RunArgs args;
  std::unique_ptr<Plan> plan;
  std::unique_ptr<Schedule> schedule;
  GpuRank(Device& dev, const HostInputs& in, cudaStream_t stream)
      : q(dev, in.q), kv(dev, in.kv_cache), bt(dev, in.block_table), lens(dev, in.cache_seqlens), out(dev, in.out),
        lse(dev, in.lse) {
    args.q = q.view;
    args.kv_cache = kv.view;
    args.block_table = bt.view;
    args.cache_seqlens = lens.view;
    args.out = out.view;
    args.lse = lse.view;
    plan = dev.plan(in.problem);
    schedule = plan->schedule(args.cache_seqlens, stream);
  }
  void download(Device& dev, HostInputs& in) const {
    dev.copy(in.out.data(), out.ptr, in.out.bytes(), CopyKind::device_to_host);
    dev.copy(in.lse.data(), lse.ptr, in.lse.bytes(), CopyKind::device_to_host);
  }
};

// Runs every rank's shard and merge on its own thread (a LoopbackRank each, wrapped by
// `wrap(rank, loopback)` when given); ranks[r] gets rank r's merged out and lse.
template <typename Wrap>
std::vector<std::string> run_ranks(Device& dev, const Problem& full, std::vector<HostInputs>& ranks, Wrap&& wrap) {
  const int n = static_cast<int>(ranks.size());
  InProcessGroup group(n);
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        HostInputs& in = ranks[static_cast<size_t>(r)];
        cudaStream_t stream = nullptr;
        cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
        {
          GpuRank g(dev, in, stream);
          g.plan->run(g.args, *g.schedule, stream);
          LoopbackRank loopback(group, r);
          dev.merge_context_parallel(full, g.args.out, g.args.lse, wrap(r, loopback), stream);
          dev.synchronize(stream);
          g.download(dev, in);
        }
        cudaStreamDestroy(stream);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

HostInputs random_problem(int64_t s_q, uint64_t seed) {
  Problem p;
  p.batch = 4;
  p.s_q = s_q;
  p.h_q = 64;
  p.causal = s_q > 1;
  InputSpec spec;
  spec.seqlens = {0, 1, 150, 1000};
  spec.seed = seed;
  return make_random_inputs(p, spec);
}

}  // namespace
#endif

TEST_CASE("cuda context parallel: N ranks on one GPU merged equal one device", "[cuda][context_parallel]") {
#ifndef MLA_TESTS_HAVE_CUDA
  WARN("skipped: built without CUDA");
#else
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  for (ContextExchange exchange : kContextExchanges) {
    auto dev = open_gpu(exchange);
    for (int n : {2, 3})
      for (int64_t s_q : {1, 2}) {
        const HostInputs full = random_problem(s_q, Catch::rngSeed() + static_cast<uint64_t>(n * 10 + s_q));
        INFO(context_exchange_name(exchange) << ", " << n << " ranks, " << full.problem.describe());
        std::vector<HostInputs> ranks;
        for (int r = 0; r < n; ++r) ranks.push_back(context_shard(full, r, n));
        const auto errors = run_ranks(*dev, full.problem, ranks, [](int, Communicator& c) -> Communicator& { return c; });
        for (const auto& e : errors) CHECK(e.empty());
        check_merged_ranks(full, ranks);
      }
  }
#endif
}

TEST_CASE("cuda context parallel: a rank's run + merge captured in a CUDA graph replays bit-equal",
          "[cuda][context_parallel][graph]") {
#ifndef MLA_TESTS_HAVE_CUDA
  WARN("skipped: built without CUDA");
#else
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  const int n = 2;
  for (ContextExchange exchange : kContextExchanges) {
    auto dev = open_gpu(exchange);
    const HostInputs full = random_problem(2, Catch::rngSeed() + 77);
    INFO(context_exchange_name(exchange) << ", " << full.problem.describe());
    // The direct step of both ranks, recording what rank 0's collectives delivered.
    std::vector<HostInputs> ranks;
    for (int r = 0; r < n; ++r) ranks.push_back(context_shard(full, r, n));
    std::vector<std::unique_ptr<RecordingRank>> recorders(n);
    const auto errors = run_ranks(*dev, full.problem, ranks, [&](int r, Communicator& c) -> Communicator& {
      recorders[static_cast<size_t>(r)] = std::make_unique<RecordingRank>(c);
      return *recorders[static_cast<size_t>(r)];
    });
    for (const auto& e : errors) REQUIRE(e.empty());
    check_merged_ranks(full, ranks);
    CHECK(recorders[0]->received.size() == (exchange == ContextExchange::all_gather ? 1u : 2u));

    // Rank 0's step captured once (schedule made before), replayed three times.
    HostInputs replayed = context_shard(full, 0, n);
    cudaStream_t stream = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
    {
      GpuRank g(*dev, replayed, stream);
      ReplayRank comm(*dev, *recorders[0]);
      cuda_tools::CapturedGraph graph(stream, [&] {
        g.plan->run(g.args, *g.schedule, stream);
        dev->merge_context_parallel(full.problem, g.args.out, g.args.lse, comm, stream);
      });
      for (int i = 0; i < 3; ++i) {
        replayed.poison_outputs();
        dev->copy(g.out.ptr, replayed.out.data(), replayed.out.bytes(), CopyKind::host_to_device, stream);
        dev->copy(g.lse.ptr, replayed.lse.data(), replayed.lse.bytes(), CopyKind::host_to_device, stream);
        graph.launch();
        REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
        g.download(*dev, replayed);
        INFO("replay " << i);
        CHECK(std::memcmp(replayed.out.data(), ranks[0].out.data(), replayed.out.bytes()) == 0);
        CHECK(std::memcmp(replayed.lse.data(), ranks[0].lse.data(), replayed.lse.bytes()) == 0);
      }
    }
    cudaStreamDestroy(stream);
  }
#endif
}

TEST_CASE("cuda wraps a one-rank NCCL communicator", "[cuda][context_parallel]") {
#ifndef MLA_TESTS_HAVE_CUDA
  WARN("skipped: built without CUDA");
#else
  MLA_SKIP_WITHOUT_CUDA_DEVICE();
  const char* env = std::getenv("MLA_NCCL_LIBRARY");
  void* lib = dlopen(env && *env ? env : "libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
  if (!lib) {
    WARN("skipped: NCCL cannot be loaded here (set MLA_NCCL_LIBRARY): " << dlerror());
    return;
  }
  using InitAll = int (*)(void**, int, const int*);
  using Destroy = int (*)(void*);
  auto init_all = reinterpret_cast<InitAll>(dlsym(lib, "ncclCommInitAll"));
  auto destroy = reinterpret_cast<Destroy>(dlsym(lib, "ncclCommDestroy"));
  REQUIRE(init_all);
  REQUIRE(destroy);
  void* nccl_comm = nullptr;
  const int devices[1] = {0};
  REQUIRE(init_all(&nccl_comm, 1, devices) == 0);
  auto dev = open_device(nlohmann::json{{"backend", "cuda"}, {"name", "test gpu"}, {"cuda", {{"device_index", 0}}}});
  {
    auto comm = dev->wrap_native_communicator(nccl_comm);
    CHECK(comm->rank() == 0);
    CHECK(comm->size() == 1);
    void* buf = dev->allocate(512);
    std::vector<unsigned char> host(256), back(256);
    for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<unsigned char>(i * 7 + 3);
    dev->copy(buf, host.data(), host.size(), CopyKind::host_to_device);
    comm->all_gather(buf, static_cast<char*>(buf) + 256, 256, nullptr);
    dev->synchronize();
    dev->copy(back.data(), static_cast<char*>(buf) + 256, back.size(), CopyKind::device_to_host);
    CHECK(back == host);
    // A one-rank all-reduce delivers the send: sum and max, in place and not.
    std::vector<float> values = {1.5f, -2.f, 3.25f, 0.f}, got(values.size());
    dev->copy(buf, values.data(), values.size() * sizeof(float), CopyKind::host_to_device);
    auto* floats = static_cast<float*>(buf);
    comm->all_reduce(floats, floats + 8, values.size(), ReduceOp::sum, nullptr);
    comm->all_reduce(floats + 8, floats + 8, values.size(), ReduceOp::max, nullptr);
    dev->synchronize();
    dev->copy(got.data(), floats + 8, got.size() * sizeof(float), CopyKind::device_to_host);
    CHECK(got == values);
    dev->deallocate(buf);
  }
  destroy(nccl_comm);
#endif
}
