// Context parallelism on one GPU: N ranks as threads sharing the GPU, each running its shard of
// every sequence's pages on the cuda backend, merged by the GPU merge through a loopback
// communicator (device-to-device copies between the ranks' buffers). Every rank must hold the
// same bits, within tolerance of the float64 reference of the unsplit problem. Then the NCCL
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

// A rank of ranks that share one GPU: the ranks swap their send pointers through an
// InProcessGroup (which also keeps them in step), then each copies every rank's buffer
// device-to-device into its own recv buffer.
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
    for (size_t k = 0; k < sends.size(); ++k)
      cuda_ok(cudaMemcpyAsync(static_cast<char*>(recv) + bytes * k, sends[k], bytes, cudaMemcpyDeviceToDevice, s),
              "cudaMemcpyAsync");
    cuda_ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    const char done = 1;  // nobody's send changes while another rank still copies it
    std::vector<char> all(sends.size());
    host_->all_gather(&done, all.data(), 1, nullptr);
  }

 private:
  std::unique_ptr<Communicator> host_;
};

}  // namespace
#endif

TEST_CASE("cuda context parallel: N ranks on one GPU merged equal one device", "[cuda][context_parallel]") {
#ifndef MLA_TESTS_HAVE_CUDA
  WARN("skipped: built without CUDA");
#else
  const std::string reason = why_no_cuda_device();
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
      for (int r = 0; r < n; ++r) ranks.push_back(context_shard(full, r, n));
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
              LoopbackRank comm(group, r);
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
      check_merged_ranks(full, ranks);
    }
#endif
}

TEST_CASE("cuda wraps a one-rank NCCL communicator", "[cuda][context_parallel]") {
#ifndef MLA_TESTS_HAVE_CUDA
  WARN("skipped: built without CUDA");
#else
  const std::string reason = why_no_cuda_device();
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
