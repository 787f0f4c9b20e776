#include "mla/context_parallel.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "mla/error.hpp"
#include "mla/host_tensor.hpp"
#include "mla/inputs.hpp"

namespace mla {

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

int64_t offset4(const TensorView& t, int64_t i0, int64_t i1, int64_t i2) {
  return i0 * t.strides[0] + i1 * t.strides[1] + i2 * t.strides[2];
}

}  // namespace

void merge_context_parallel_host(const Problem& p, const TensorView& out, const TensorView& lse, Communicator& comm,
                            void* stream) {
  if (out.space != MemorySpace::host || lse.space != MemorySpace::host)
    fail(ErrorCode::unsupported, "merge_context_parallel: out and lse must be in host memory (host backends)");
  const int n = comm.size();
  if (n == 1) return;
  const int64_t rows = p.batch * p.s_q * p.h_q, width = p.out_width();
  // This rank's partial as fp32 [rows][width + 1] (lse last), the unit of the all-gather.
  const int64_t row_floats = width + 1;
  std::vector<float> mine(static_cast<size_t>(rows * row_floats)), all(static_cast<size_t>(rows * row_floats * n));
  auto for_each_row = [&](auto&& body) {
    for (int64_t i = 0; i < p.batch; ++i)
      for (int64_t t = 0; t < p.s_q; ++t)
        for (int64_t h = 0; h < p.h_q; ++h) body(i, t, h, (i * p.s_q + t) * p.h_q + h);
  };
  for_each_row([&](int64_t i, int64_t t, int64_t h, int64_t r) {
    float* row = &mine[static_cast<size_t>(r * row_floats)];
    const int64_t base = offset4(out, i, t, h);
    for (int64_t d = 0; d < width; ++d) row[d] = static_cast<float>(load_element(out.data, out.dtype, base + d));
    row[width] = lse.as<float>()[i * lse.strides[0] + h * lse.strides[1] + t * lse.strides[2]];
  });
  comm.all_gather(mine.data(), all.data(), mine.size() * sizeof(float), stream);

  constexpr float kInf = std::numeric_limits<float>::infinity();
  std::vector<double> acc(static_cast<size_t>(width));
  for_each_row([&](int64_t i, int64_t t, int64_t h, int64_t r) {
    // lse of each rank: +inf means "saw nothing" and weighs 0; NaN makes the row NaN.
    double mx = -kInf;
    bool nan = false;
    for (int k = 0; k < n; ++k) {
      const float x = all[static_cast<size_t>((k * rows + r) * row_floats + width)];
      if (std::isnan(x)) nan = true;
      else if (x != kInf) mx = std::max<double>(mx, x);
    }
    const int64_t base = offset4(out, i, t, h);
    float* lse_out = &lse.as<float>()[i * lse.strides[0] + h * lse.strides[1] + t * lse.strides[2]];
    if (nan || mx == -kInf) {  // NaN row, or no rank saw a key: the operator's empty result
      for (int64_t d = 0; d < width; ++d) store_element(out, base + d, nan ? std::nan("") : 0.0);
      *lse_out = nan ? std::numeric_limits<float>::quiet_NaN() : kInf;
      return;
    }
    std::fill(acc.begin(), acc.end(), 0.0);
    double sum = 0;
    for (int k = 0; k < n; ++k) {
      const float* row = &all[static_cast<size_t>((k * rows + r) * row_floats)];
      if (row[width] == kInf) continue;
      const double w = std::exp(static_cast<double>(row[width]) - mx);
      sum += w;
      for (int64_t d = 0; d < width; ++d) acc[static_cast<size_t>(d)] += w * row[d];
    }
    for (int64_t d = 0; d < width; ++d) store_element(out, base + d, acc[static_cast<size_t>(d)] / sum);
    *lse_out = static_cast<float>(mx + std::log(sum));
  });
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
