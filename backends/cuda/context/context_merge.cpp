#include "context_merge.hpp"

#include <string>

#include "../cuda_check.hpp"
#include "merge_launch.hpp"
#include "mla/error.hpp"

namespace mla::cuda {
namespace {

size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

// One stream-ordered buffer of the pool around `body(buffer)`: given back on the stream after
// the work `body` queued, also when it throws.
template <typename Body>
void with_pool_buffer(MergePool& pool, size_t bytes, cudaStream_t stream, Body&& body) {
  void* buffer = pool.allocate(bytes, stream);
  try {
    body(static_cast<unsigned char*>(buffer));
  } catch (...) {
    pool.release(buffer, stream);
    throw;
  }
  check(pool.release(buffer, stream), "cudaFreeAsync(merge)");
}

// One collective: this rank's out and lse are copied into its own slot of the receive buffer
// ([out | lse], 256-byte aligned slots) and all-gathered in place (send = recv + rank * slot,
// as NCCL allows), so one call moves both; then every rank merges all n slots.
void merge_by_all_gather(const MergeRows& rows, portable::Elem elem, const TensorView& out, const TensorView& lse,
                         Communicator& comm, MergePool& pool, cudaStream_t stream) {
  const int n = comm.size();
  const size_t out_bytes = static_cast<size_t>(out.numel()) * dtype_size(out.dtype);
  const size_t lse_bytes = static_cast<size_t>(lse.numel()) * sizeof(float);
  const size_t lse_offset = round_up(out_bytes, 16), slot = round_up(lse_offset + lse_bytes, 256);
  with_pool_buffer(pool, slot * static_cast<size_t>(n), stream, [&](unsigned char* gathered) {
    unsigned char* mine = gathered + slot * static_cast<size_t>(comm.rank());
    check(cudaMemcpyAsync(mine, out.data, out_bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync(pack out)");
    check(cudaMemcpyAsync(mine + lse_offset, lse.data, lse_bytes, cudaMemcpyDeviceToDevice, stream),
          "cudaMemcpyAsync(pack lse)");
    comm.all_gather(mine, gathered, slot, stream);
    GatheredMergeParams m;
    m.rows = rows;
    m.ranks = n;
    m.gathered = gathered;
    m.slot_bytes = slot;
    m.lse_offset = lse_offset;
    m.out = out.data;
    m.lse = lse.as<float>();
    launch_gathered_merge(elem, m, stream);
  });
}

// Two collectives on fp32: the row max (max all-reduce of each rank's max_key), then the sum
// all-reduce of every rank's [out * w | w]; each rank finishes its own copy of the sums.
void merge_by_all_reduce(const MergeRows& rows, portable::Elem elem, const TensorView& out, const TensorView& lse,
                         Communicator& comm, MergePool& pool, cudaStream_t stream) {
  const size_t count = static_cast<size_t>(rows.count());
  const size_t keys_bytes = round_up(count * sizeof(float), 256);
  const size_t sums_count = count * static_cast<size_t>(rows.width + 1);
  with_pool_buffer(pool, keys_bytes + sums_count * sizeof(float), stream, [&](unsigned char* buffer) {
    ReducedMergeParams m;
    m.rows = rows;
    m.keys = reinterpret_cast<float*>(buffer);
    m.sums = reinterpret_cast<float*>(buffer + keys_bytes);
    m.out = out.data;
    m.lse = lse.as<float>();
    launch_max_keys(m, stream);
    comm.all_reduce(m.keys, m.keys, count, ReduceOp::max, stream);
    launch_scale_partials(elem, m, stream);
    comm.all_reduce(m.sums, m.sums, sums_count, ReduceOp::sum, stream);
    launch_finish_reduced(elem, m, stream);
  });
}

}  // namespace

void merge_context_parallel_cuda(const Problem& p, const TensorView& out, const TensorView& lse, Communicator& comm,
                                 ContextExchange exchange, MergePool& pool, cudaStream_t stream) {
  if (p.dtype != DType::bf16 && p.dtype != DType::fp16)
    fail(ErrorCode::unsupported, std::string("cuda: merge_context_parallel of dtype ") + dtype_name(p.dtype));
  if (!out.is_contiguous() || !lse.is_contiguous())
    fail(ErrorCode::unsupported, "cuda: merge_context_parallel needs contiguous out and lse");
  if (comm.size() == 1) return;
  MergeRows rows;
  rows.batch = p.batch;
  rows.s_q = p.s_q;
  rows.h_q = p.h_q;
  rows.width = static_cast<int>(p.out_width());
  const portable::Elem elem = p.dtype == DType::bf16 ? portable::Elem::bf16 : portable::Elem::fp16;
  if (exchange == ContextExchange::all_reduce) merge_by_all_reduce(rows, elem, out, lse, comm, pool, stream);
  else merge_by_all_gather(rows, elem, out, lse, comm, pool, stream);
}

}  // namespace mla::cuda
