#include "nccl_communicator.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include <cuda_runtime.h>

#include "mla/error.hpp"

namespace mla::cuda {
namespace {

// The few NCCL entry points the merge needs, with NCCL's C types spelled out (stable ABI:
// ncclResult_t, ncclDataType_t and ncclRedOp_t are ints, ncclComm_t an opaque pointer;
// ncclUint8 is 1, ncclFloat32 7, ncclSum 0, ncclMax 2).
using NcclResult = int;
constexpr int kNcclSuccess = 0;
constexpr int kNcclUint8 = 1;
constexpr int kNcclFloat32 = 7;
constexpr int kNcclSum = 0;
constexpr int kNcclMax = 2;
struct NcclApi {
  NcclResult (*all_gather)(const void*, void*, size_t, int, void*, cudaStream_t) = nullptr;
  NcclResult (*all_reduce)(const void*, void*, size_t, int, int, void*, cudaStream_t) = nullptr;
  NcclResult (*count)(void*, int*) = nullptr;
  NcclResult (*user_rank)(void*, int*) = nullptr;
  const char* (*error_string)(NcclResult) = nullptr;
  std::string failure;  // why NCCL could not be loaded
};

const NcclApi& nccl() {
  static NcclApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("MLA_NCCL_LIBRARY");
    const std::string path = env && *env ? env : "libnccl.so.2";
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
      const char* why = dlerror();
      api.failure = "cannot load NCCL (" + path + "): " + (why ? why : "unknown error") +
                    "; set MLA_NCCL_LIBRARY to the libnccl.so.2 your runtime uses";
      return;
    }
    api.all_gather = reinterpret_cast<decltype(api.all_gather)>(dlsym(lib, "ncclAllGather"));
    api.all_reduce = reinterpret_cast<decltype(api.all_reduce)>(dlsym(lib, "ncclAllReduce"));
    api.count = reinterpret_cast<decltype(api.count)>(dlsym(lib, "ncclCommCount"));
    api.user_rank = reinterpret_cast<decltype(api.user_rank)>(dlsym(lib, "ncclCommUserRank"));
    api.error_string = reinterpret_cast<decltype(api.error_string)>(dlsym(lib, "ncclGetErrorString"));
    if (!api.all_gather || !api.all_reduce || !api.count || !api.user_rank || !api.error_string)
      api.failure = path + " lacks ncclAllGather, ncclAllReduce, ncclCommCount, ncclCommUserRank or ncclGetErrorString";
  });
  if (!api.failure.empty()) fail(ErrorCode::unsupported, "cuda: " + api.failure);
  return api;
}

void check_nccl(NcclResult r, const char* what) {
  if (r != kNcclSuccess)
    fail(ErrorCode::device_error, std::string("cuda: ") + what + ": " + nccl().error_string(r));
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(void* comm) : comm_(comm) {
    check_nccl(nccl().user_rank(comm_, &rank_), "ncclCommUserRank");
    check_nccl(nccl().count(comm_, &size_), "ncclCommCount");
  }
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  void all_gather(const void* send, void* recv, size_t bytes, void* stream) override {
    check_nccl(nccl().all_gather(send, recv, bytes, kNcclUint8, comm_, static_cast<cudaStream_t>(stream)), "ncclAllGather");
  }
  void all_reduce(const float* send, float* recv, size_t count, ReduceOp op, void* stream) override {
    check_nccl(nccl().all_reduce(send, recv, count, kNcclFloat32, op == ReduceOp::max ? kNcclMax : kNcclSum, comm_,
                                 static_cast<cudaStream_t>(stream)),
               "ncclAllReduce");
  }

 private:
  void* comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(void* nccl_comm) {
  if (!nccl_comm) fail(ErrorCode::invalid_argument, "cuda: the NCCL communicator is null");
  return std::make_unique<NcclCommunicator>(nccl_comm);
}

}  // namespace mla::cuda
