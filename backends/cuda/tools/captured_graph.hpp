// One piece of stream work captured once into an instantiated CUDA graph, for the tools that
// time a step the way a serving loop launches it. Capture mode thread-local: several ranks'
// threads capture at once, and a capture must not refuse another thread's CUDA calls.
#pragma once

#include <cuda_runtime.h>

#include <exception>
#include <string>

#include "mla/error.hpp"

namespace mla::cuda_tools {

class CapturedGraph {
 public:
  // Captures what `work()` queues on `stream`; Error(device_error) when the capture or the
  // instantiation fails, with work()'s own error when it threw.
  template <typename Work>
  CapturedGraph(cudaStream_t stream, Work&& work) : stream_(stream) {
    ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    std::string error;
    try {
      work();
    } catch (const std::exception& e) {
      error = e.what();
    }
    const cudaError_t ended = cudaStreamEndCapture(stream, &graph_);
    if (!error.empty()) {
      if (graph_) cudaGraphDestroy(graph_);
      fail(ErrorCode::device_error, "graph capture: " + error);
    }
    ok(ended, "cudaStreamEndCapture");
    ok(cudaGraphInstantiate(&exec_, graph_, 0), "cudaGraphInstantiate");
  }
  ~CapturedGraph() {
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
  }
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  void launch() { ok(cudaGraphLaunch(exec_, stream_), "cudaGraphLaunch"); }

 private:
  void ok(cudaError_t status, const char* what) {
    if (status == cudaSuccess) return;
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
    fail(ErrorCode::device_error, std::string("graph: ") + what + ": " + cudaGetErrorString(status));
  }
  cudaStream_t stream_;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace mla::cuda_tools
