#include "mla/context_parallel.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "mla/config.hpp"
#include "mla/context_merge_rules.hpp"
#include "mla/error.hpp"
#include "mla/host_tensor.hpp"
#include "mla/inputs.hpp"

namespace mla {

const char* context_exchange_name(ContextExchange exchange) {
  return exchange == ContextExchange::all_reduce ? "all_reduce" : "all_gather";
}

ContextExchange parse_context_parallel_config(ConfigReader& root) {
  ConfigReader section = root.object("context_parallel");
  const std::string exchange = section.choice("exchange", context_exchange_name(ContextExchange::all_gather),
                                              {context_exchange_name(ContextExchange::all_gather),
                                               context_exchange_name(ContextExchange::all_reduce)});
  section.finish();
  return exchange == context_exchange_name(ContextExchange::all_reduce) ? ContextExchange::all_reduce
                                                                        : ContextExchange::all_gather;
}

void Communicator::all_reduce(const float*, float*, size_t, ReduceOp, void*) {
  fail(ErrorCode::unsupported,
       "merge_context_parallel: this communicator has no all_reduce, which the all_reduce exchange needs "
       "(context_parallel.exchange = \"all_reduce\"); implement Communicator::all_reduce or use the default "
       "\"all_gather\" exchange");
}

// A generation-counted barrier around one shared buffer: ranks copy in, wait for all, copy
// out, wait again so nobody overwrites the buffer while another still reads it.
struct InProcessGroup::State {
  explicit State(int n) : size(n) {}
  int size;
  std::mutex mutex;
  std::condition_variable cv;
  int arrived = 0;
  long generation = 0;
  std::vector<char> buffer;

  void barrier(std::unique_lock<std::mutex>& lock) {
    const long gen = generation;
    if (++arrived == size) {
      arrived = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return generation != gen; });
    }
  }
};

namespace {

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(InProcessGroup::State* state, int rank) : state_(state), rank_(rank) {}
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override;
  void all_gather(const void* send, void* recv, size_t bytes, void*) override;
  void all_reduce(const float* send, float* recv, size_t count, ReduceOp op, void*) override;

 private:
  InProcessGroup::State* state_;
  int rank_;
};

}  // namespace

InProcessGroup::InProcessGroup(int size) : state_(std::make_unique<State>(size)) {
  if (size < 1) fail(ErrorCode::invalid_argument, "InProcessGroup: expected at least 1 rank, got " + std::to_string(size));
}
InProcessGroup::~InProcessGroup() = default;

std::unique_ptr<Communicator> InProcessGroup::communicator(int rank) {
  if (rank < 0 || rank >= state_->size)
    fail(ErrorCode::invalid_argument, "InProcessGroup: rank " + std::to_string(rank) + " of a group of " +
                                          std::to_string(state_->size));
  return std::make_unique<InProcessCommunicator>(state_.get(), rank);
}

namespace {

int InProcessCommunicator::size() const { return state_->size; }

void InProcessCommunicator::all_gather(const void* send, void* recv, size_t bytes, void*) {
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->buffer.resize(bytes * static_cast<size_t>(state_->size));
  std::memcpy(state_->buffer.data() + bytes * static_cast<size_t>(rank_), send, bytes);
  state_->barrier(lock);
  std::memcpy(recv, state_->buffer.data(), bytes * static_cast<size_t>(state_->size));
  state_->barrier(lock);
}

void InProcessCommunicator::all_reduce(const float* send, float* recv, size_t count, ReduceOp op, void*) {
  const size_t bytes = count * sizeof(float), n = static_cast<size_t>(state_->size);
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->buffer.resize(bytes * n);
  std::memcpy(state_->buffer.data() + bytes * static_cast<size_t>(rank_), send, bytes);
  state_->barrier(lock);
  // Every rank reduces all slots in rank order: the same operations, so the same bits.
  const auto* all = reinterpret_cast<const float*>(state_->buffer.data());
  for (size_t i = 0; i < count; ++i) {
    if (op == ReduceOp::max) {
      float m = all[i];
      for (size_t k = 1; k < n; ++k) m = std::fmax(m, all[k * count + i]);
      recv[i] = m;
    } else {
      double sum = 0;
      for (size_t k = 0; k < n; ++k) sum += all[k * count + i];
      recv[i] = static_cast<float>(sum);
    }
  }
  state_->barrier(lock);
}

int64_t offset4(const TensorView& t, int64_t i0, int64_t i1, int64_t i2) {
  return i0 * t.strides[0] + i1 * t.strides[1] + i2 * t.strides[2];
}

// The rows of a problem's out / lse in out's order (sequence, query token, head), each with the
// offset of its out row and a reference to its lse.
class HostRows {
 public:
  HostRows(const Problem& p, const TensorView& out, const TensorView& lse) : p_(p), out_(out), lse_(lse) {}
  [[nodiscard]] int64_t count() const { return p_.batch * p_.s_q * p_.h_q; }
  [[nodiscard]] int64_t width() const { return p_.out_width(); }
  template <typename Body>  // body(row index, offset of the row in out, the row's lse)
  void for_each(Body&& body) const {
    for (int64_t i = 0; i < p_.batch; ++i)
      for (int64_t t = 0; t < p_.s_q; ++t)
        for (int64_t h = 0; h < p_.h_q; ++h)
          body((i * p_.s_q + t) * p_.h_q + h, offset4(out_, i, t, h),
               lse_.as<float>()[i * lse_.strides[0] + h * lse_.strides[1] + t * lse_.strides[2]]);
  }
  [[nodiscard]] float out_at(int64_t offset) const { return static_cast<float>(load_element(out_.data, out_.dtype, offset)); }
  // Writes a merged row (merge_rules) from its max and summed weight; value(d) gives the
  // elements of a row of kind `merged`.
  template <typename Value>
  void write(int64_t base, float& lse, float mx, float sum_w, Value&& value) const {
    const merge_rules::RowKind kind = merge_rules::row_kind(sum_w);
    for (int64_t d = 0; d < width(); ++d)
      store_element(out_, base + d,
                    kind == merge_rules::RowKind::merged ? value(d) : double{merge_rules::unmerged_out(kind)});
    lse = merge_rules::row_lse(kind, mx, sum_w);
  }

 private:
  const Problem& p_;
  const TensorView& out_;
  const TensorView& lse_;
};

// Every rank's partial as fp32 [rows][width + 1] (lse last) in one all-gather; each rank then
// merges all n partials of every row (sums in double, in rank order).
void merge_by_all_gather(const HostRows& rows, Communicator& comm, void* stream) {
  const int n = comm.size();
  const int64_t width = rows.width(), row_floats = width + 1;
  std::vector<float> mine(static_cast<size_t>(rows.count() * row_floats)),
      all(static_cast<size_t>(rows.count() * row_floats * n));
  rows.for_each([&](int64_t r, int64_t base, float& lse) {
    float* row = &mine[static_cast<size_t>(r * row_floats)];
    for (int64_t d = 0; d < width; ++d) row[d] = rows.out_at(base + d);
    row[width] = lse;
  });
  comm.all_gather(mine.data(), all.data(), mine.size() * sizeof(float), stream);

  std::vector<double> acc(static_cast<size_t>(width));
  rows.for_each([&](int64_t r, int64_t base, float& lse) {
    auto rank_row = [&](int k) { return &all[static_cast<size_t>((k * rows.count() + r) * row_floats)]; };
    float mx = -std::numeric_limits<float>::infinity();
    for (int k = 0; k < n; ++k) mx = std::max(mx, merge_rules::max_key(rank_row(k)[width]));
    std::fill(acc.begin(), acc.end(), 0.0);
    double sum_w = 0;
    for (int k = 0; k < n; ++k) {
      const float* row = rank_row(k);
      const float w = merge_rules::weight(row[width], mx);
      sum_w += w;
      for (int64_t d = 0; d < width; ++d) acc[static_cast<size_t>(d)] += merge_rules::scaled(w, row[d]);
    }
    rows.write(base, lse, mx, static_cast<float>(sum_w), [&](int64_t d) { return acc[static_cast<size_t>(d)] / sum_w; });
  });
}

// A max all-reduce of the rows' max keys, then one sum all-reduce of fp32 [out * w | w] (all
// rows' scaled outs, then all rows' weights): each rank finishes its own copy of the sums.
void merge_by_all_reduce(const HostRows& rows, Communicator& comm, void* stream) {
  const int64_t width = rows.width(), count = rows.count();
  std::vector<float> mx(static_cast<size_t>(count));
  rows.for_each([&](int64_t r, int64_t, float& lse) { mx[static_cast<size_t>(r)] = merge_rules::max_key(lse); });
  comm.all_reduce(mx.data(), mx.data(), mx.size(), ReduceOp::max, stream);

  std::vector<float> sums(static_cast<size_t>(count * (width + 1)));
  float* sum_w = &sums[static_cast<size_t>(count * width)];
  rows.for_each([&](int64_t r, int64_t base, float& lse) {
    const float w = merge_rules::weight(lse, mx[static_cast<size_t>(r)]);
    for (int64_t d = 0; d < width; ++d)
      sums[static_cast<size_t>(r * width + d)] = merge_rules::scaled(w, rows.out_at(base + d));
    sum_w[r] = w;
  });
  comm.all_reduce(sums.data(), sums.data(), sums.size(), ReduceOp::sum, stream);

  rows.for_each([&](int64_t r, int64_t base, float& lse) {
    const float s = sum_w[r];
    rows.write(base, lse, mx[static_cast<size_t>(r)], s,
               [&](int64_t d) { return static_cast<double>(sums[static_cast<size_t>(r * width + d)] / s); });
  });
}

}  // namespace

void merge_context_parallel_host(const Problem& p, const TensorView& out, const TensorView& lse, Communicator& comm,
                                 void* stream, ContextExchange exchange) {
  if (out.space != MemorySpace::host || lse.space != MemorySpace::host)
    fail(ErrorCode::unsupported, "merge_context_parallel: out and lse must be in host memory (host backends)");
  if (comm.size() == 1) return;
  const HostRows rows(p, out, lse);
  if (exchange == ContextExchange::all_reduce) merge_by_all_reduce(rows, comm, stream);
  else merge_by_all_gather(rows, comm, stream);
}

HostInputs context_shard(const HostInputs& full, int r, int n) {
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
      s.block_table.as<int32_t>()[i * p.max_blocks_per_seq + (j - first)] =
          full.block_table.as<int32_t>()[i * p.max_blocks_per_seq + j];
    s.cache_seqlens.as<int32_t>()[i] =
        static_cast<int32_t>(std::clamp<int64_t>(len - first * p.page_size, 0, (last - first) * p.page_size));
    s.seqlens[static_cast<size_t>(i)] = s.cache_seqlens.as<int32_t>()[i];
  }
  s.out = HostTensor(full.out.view().dtype, {p.batch, p.s_q, p.h_q, p.out_width()});
  s.lse = HostTensor(DType::fp32, {p.batch, p.h_q, p.s_q});
  s.poison_outputs();
  return s;
}


}  // namespace mla
