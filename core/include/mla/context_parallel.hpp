// Decode with every sequence's KV cache split by tokens across ranks (context parallelism):
// each rank runs the operator over its shard and gets a partial out and lse; the partials merge
// exactly, out = sum_r exp(lse_r - lse) out_r with lse = logsumexp_r lse_r. The runtime owns the
// ranks and the communicator (NCCL on GPUs); the library only exchanges through it.
// docs/context-parallel.md has the contract (shards, the causal rule for s_q > 1).
#pragma once

#include <cstddef>
#include <memory>

#include "mla/problem.hpp"
#include "mla/tensor.hpp"

namespace mla {

// The one collective the merge needs: an all-gather of equal-sized byte buffers, ordered on
// `stream` (host communicators ignore it and block).
class Communicator {
 public:
  virtual ~Communicator() = default;
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int size() const = 0;
  // `recv` holds size() * bytes; rank r's `send` lands at offset r * bytes on every rank.
  virtual void all_gather(const void* send, void* recv, size_t bytes, void* stream) = 0;
};

// Ranks as threads of one process, for host backends and tests (no GPU, no NCCL): every rank's
// all_gather blocks until all ranks of the group have called it.
class InProcessGroup {
 public:
  explicit InProcessGroup(int size);
  ~InProcessGroup();
  InProcessGroup(const InProcessGroup&) = delete;
  InProcessGroup& operator=(const InProcessGroup&) = delete;
  // The communicator of one rank; it must not outlive the group.
  [[nodiscard]] std::unique_ptr<Communicator> communicator(int rank);

  struct State;  // opaque: the shared buffer and barrier (context_parallel.cpp)

 private:
  std::unique_ptr<State> state_;
};

// Device::merge_context_parallel on host memory (what host backends run; Device validates
// first). After this rank ran `problem` on its shard (out, lse hold its partial), replaces them with the
// merge of every rank's partials, so each rank ends with the full result. Host memory. Rows a
// shard did not see (lse +inf, out 0: the operator's empty-row result) add nothing; a row no
// rank saw stays out 0, lse +inf. Every rank sums in rank order, so all ranks hold the same bits.
struct HostInputs;
// Rank r of n of a context-parallel split of `full` (host inputs, for tests, tools and as the
// reference layout): pages [r*P/n, (r+1)*P/n) of each sequence (P its page count), contiguous
// token ranges in rank order with the newest tokens on the last rank, which alone keeps the
// causal mask (docs/context-parallel.md). q, weights and the physical cache are shared with
// `full`; block table, lengths and fresh poisoned outputs are the rank's own.
HostInputs context_shard(const HostInputs& full, int rank, int ranks);

void merge_context_parallel_host(const Problem& problem, const TensorView& out, const TensorView& lse, Communicator& comm,
                            void* stream = nullptr);

}  // namespace mla
