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

class ConfigReader;

// How merge_context_parallel exchanges the partials (the device config's
// `context_parallel.exchange`, docs/configs.md):
//   all_gather: one all-gather of every rank's packed [out | lse], then each rank merges all of
//     them (the 16-bit partials travel; every rank does the whole merge);
//   all_reduce: a max all-reduce of lse, then one sum all-reduce of fp32 [out * w | w] with
//     w = exp(lse - max) (twice the bytes, two collectives, but no per-rank merge of n partials).
enum class ContextExchange : int { all_gather = 0, all_reduce = 1 };
inline constexpr ContextExchange kContextExchanges[] = {ContextExchange::all_gather, ContextExchange::all_reduce};
[[nodiscard]] const char* context_exchange_name(ContextExchange exchange);
// Reads the optional `context_parallel` object of a device config ({"exchange": "all_gather" |
// "all_reduce"}, default all_gather); problems go to the reader, like every other key.
ContextExchange parse_context_parallel_config(ConfigReader& root);

enum class ReduceOp : int { sum = 0, max = 1 };

// The collectives the merge needs, ordered on `stream` (host communicators ignore it and block).
class Communicator {
 public:
  virtual ~Communicator() = default;
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int size() const = 0;
  // `recv` holds size() * bytes; rank r's `send` lands at offset r * bytes on every rank.
  // Must handle `send == recv + rank() * bytes` (in place, as NCCL does): the cuda merge always
  // calls it so. A communicator over something that forbids aliasing (MPI without
  // MPI_IN_PLACE, say) copies `send` aside first.
  virtual void all_gather(const void* send, void* recv, size_t bytes, void* stream) = 0;
  // recv[i] = op over the ranks of send[i], `count` floats; `send` may equal `recv`. Every rank
  // must receive the same bits; max follows fmax (a NaN operand is dropped: the merge never
  // sends one). Only the all_reduce exchange calls it, so a communicator written for the
  // all-gather form need not implement it: the default throws Error(unsupported).
  virtual void all_reduce(const float* send, float* recv, size_t count, ReduceOp op, void* stream);
};

// Ranks as threads of one process, for host backends and tests (no GPU, no NCCL): every rank's
// collectives block until all ranks of the group have called them. all_reduce sums in rank order
// (in double, rounded once), so every rank gets the same bits.
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

// Rank r of n of a context-parallel split of `full` (host inputs, for tests, tools and as the
// reference layout): pages [r*P/n, (r+1)*P/n) of each sequence (P its page count), contiguous
// token ranges in rank order with the newest tokens on the last rank, which alone keeps the
// causal mask (docs/context-parallel.md). q, weights and the physical cache are shared with
// `full`; block table, lengths and fresh poisoned outputs are the rank's own.
struct HostInputs;
HostInputs context_shard(const HostInputs& full, int rank, int ranks);

// Device::merge_context_parallel on host memory (what host backends run; Device validates
// first). After this rank ran `problem` on its shard (out, lse hold its partial), replaces them
// with the merge of every rank's partials, exchanged the `exchange` way, so each rank ends with
// the full result. Rows a shard did not see (lse +inf, out 0: the operator's empty-row result)
// add nothing; a row no rank saw stays out 0, lse +inf; a NaN lse makes the row NaN. Every rank
// computes the same sums in the same order, so all ranks hold the same bits.
void merge_context_parallel_host(const Problem& problem, const TensorView& out, const TensorView& lse, Communicator& comm,
                                 void* stream = nullptr, ContextExchange exchange = ContextExchange::all_gather);

}  // namespace mla
