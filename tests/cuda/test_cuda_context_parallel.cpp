// Context parallelism on one GPU: N ranks as threads sharing the GPU, each running its shard of
// every sequence's pages on the cuda backend, merged by the GPU merge through a loopback
// communicator (device-to-device copies between the ranks' buffers). Every rank must hold the
// same bits, within tolerance of the float64 reference of the unsplit problem. Then the NCCL
// wrapper with a one-rank NCCL communicator, where NCCL can be loaded. Skips without a GPU.
#include <catch2/catch.hpp>

#ifdef MLA_TESTS_HAVE_CUDA
#include <dlfcn.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <cuda_runtime.h>

#include "mla/compare.hpp"
#include "mla/context_parallel.hpp"
#include "mla/inputs.hpp"
#include "mla/reference.hpp"
#include "mla/registry.hpp"

using namespace mla;
#endif

#ifdef MLA_TESTS_HAVE_CUDA
namespace {

std::string why_no_gpu() {
  for (const auto& b : list_backends())
    if (b.name == "cuda") return b.availability.available ? "" : b.availability.reason;
  return "cuda backend not registered";
}

// Ranks on one GPU: all_gather waits for every rank's stream work, then each rank copies every
// rank's send buffer (device memory of the same GPU) into its own recv buffer.
class Loopback {
 public:
  explicit Loopback(int n) : n_(n), sends_(static_cast<size_t>(n)) {}
  class Rank final : public Communicator {
   public:
    Rank(Loopback& group, int rank) : g_(group), rank_(rank) {}
    [[nodiscard]] int rank() const override { return rank_; }
    [[nodiscard]] int size() const override { return g_.n_; }
    void all_gather(const void* send, void* recv, size_t bytes, void* stream) override {
      auto* s = static_cast<cudaStream_t>(stream);
      REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);  // send is complete
      g_.sends_[static_cast<size_t>(rank_)] = send;
      g_.barrier();
      for (int k = 0; k < g_.n_; ++k)
        REQUIRE(cudaMemcpyAsync(static_cast<char*>(recv) + bytes * static_cast<size_t>(k), g_.sends_[static_cast<size_t>(k)],
                                bytes, cudaMemcpyDeviceToDevice, s) == cudaSuccess);
      REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
      g_.barrier();  // nobody's send changes while another rank still copies it
    }

   private:
    Loopback& g_;
    int rank_;
  };

 private:
  void barrier() {
    std::unique_lock<std::mutex> lock(mutex_);
    const long gen = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
  }
  int n_;
  std::vector<const void*> sends_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  long generation_ = 0;
};

struct DeviceCopy {
  Device& dev;
  void* ptr = nullptr;
  TensorView view;
  DeviceCopy(Device& d, const HostTensor& h) : dev(d), ptr(d.allocate(h.bytes())) {
    d.copy(ptr, h.data(), h.bytes(), CopyKind::host_to_device);
    view = h.view();
    view.data = ptr;
    view.space = MemorySpace::device;
  }
  ~DeviceCopy() { dev.deallocate(ptr); }
};

// Rank r of n: pages [r*P/n, (r+1)*P/n) of each sequence, the newest on the last rank.
HostInputs shard(const HostInputs& full, int r, int n) {
  HostInputs s = full;
  const Problem& p = full.problem;
  s.problem.causal = p.causal && r == n - 1;
  s.block_table = HostTensor(DType::int32, {p.batch, p.max_blocks_per_seq});
  s.block_table.fill_nan();
  s.cache_seqlens = HostTensor(DType::int32, {p.batch});
  for (int64_t i = 0; i < p.batch; ++i) {
    const int64_t len = full.seqlens[static_cast<size_t>(i)], pages = (len + p.page_size - 1) / p.page_size;
    const int64_t first = r * pages / n, last = (r + 1) * pages / n;
    for (int64_t j = first; j < last; ++j)
      s.block_table.as<int32_t>()[i * p.max_blocks_per_seq + (j - first)] = full.block_table.as<int32_t>()[i * p.max_blocks_per_seq + j];
    s.cache_seqlens.as<int32_t>()[i] = static_cast<int32_t>(std::clamp<int64_t>(len - first * p.page_size, 0, (last - first) * p.page_size));
  }
  s.out = HostTensor(full.out.view().dtype, {p.batch, p.s_q, p.h_q, p.out_width()});
  s.lse = HostTensor(DType::fp32, {p.batch, p.h_q, p.s_q});
  s.poison_outputs();
  return s;
}

}  // namespace
#endif

TEST_CASE("cuda context parallel: N ranks on one GPU merged equal one device", "[cuda][context_parallel]") {
#ifndef MLA_TESTS_HAVE_CUDA
  WARN("skipped: built without CUDA");
#else
  const std::string reason = why_no_gpu();
  if (!reason.empty()) {
    WARN("skipped: " + reason);
    return;
  }
  auto dev = open_device(nlohmann::json{{"backend", "cuda"}, {"name", "test gpu"}, {"cuda", {{"device_index", 0}}}});
  for (int n : {2, 3})
    for (int64_t s_q : {1, 2}) {
      Problem p;
      p.batch = 4;
      p.s_q = s_q;
      p.h_q = 64;
      p.causal = s_q > 1;
      InputSpec spec;
      spec.seqlens = {0, 1, 150, 1000};
      spec.seed = Catch::rngSeed() + static_cast<uint64_t>(n * 10 + s_q);
      const HostInputs full = make_random_inputs(p, spec);
      INFO(n << " ranks, " << full.problem.describe());
      std::vector<HostInputs> ranks;
      for (int r = 0; r < n; ++r) ranks.push_back(shard(full, r, n));
      Loopback group(n);
      std::vector<std::thread> threads;
      std::vector<std::string> errors(static_cast<size_t>(n));
      for (int r = 0; r < n; ++r)
        threads.emplace_back([&, r] {
          try {
            HostInputs& in = ranks[static_cast<size_t>(r)];
            cudaStream_t stream = nullptr;
            cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
            {
              DeviceCopy q(*dev, in.q), kv(*dev, in.kv_cache), bt(*dev, in.block_table), lens(*dev, in.cache_seqlens),
                  out(*dev, in.out), lse(*dev, in.lse);
              RunArgs a;
              a.q = q.view;
              a.kv_cache = kv.view;
              a.block_table = bt.view;
              a.cache_seqlens = lens.view;
              a.out = out.view;
              a.lse = lse.view;
              auto plan = dev->plan(in.problem);
              auto schedule = plan->schedule(a.cache_seqlens, stream);
              plan->run(a, *schedule, stream);
              Loopback::Rank comm(group, r);
              dev->merge_context_parallel(full.problem, a.out, a.lse, comm, stream);
              dev->synchronize(stream);
              dev->copy(in.out.data(), out.ptr, in.out.bytes(), CopyKind::device_to_host);
              dev->copy(in.lse.data(), lse.ptr, in.lse.bytes(), CopyKind::device_to_host);
            }
            cudaStreamDestroy(stream);
          } catch (const std::exception& e) {
            errors[static_cast<size_t>(r)] = e.what();
          }
        });
      for (auto& t : threads) t.join();
      for (const auto& e : errors) CHECK(e.empty());
      const ReferenceOutput ref = reference_decode(full.problem, full.args());
      for (int r = 0; r < n; ++r) {
        const Comparison c = compare_to_reference(full.problem, ref, ranks[static_cast<size_t>(r)].out.view(),
                                                  ranks[static_cast<size_t>(r)].lse.view());
        INFO("rank " << r << ": " << c.summary());
        CHECK(c.passed);
        CHECK(std::memcmp(ranks[static_cast<size_t>(r)].out.data(), ranks[0].out.data(), ranks[0].out.bytes()) == 0);
      }
    }
#endif
}

TEST_CASE("cuda wraps a one-rank NCCL communicator", "[cuda][context_parallel]") {
#ifndef MLA_TESTS_HAVE_CUDA
  WARN("skipped: built without CUDA");
#else
  const std::string reason = why_no_gpu();
  if (!reason.empty()) {
    WARN("skipped: " + reason);
    return;
  }
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
    dev->deallocate(buf);
  }
  destroy(nccl_comm);
#endif
}
