#include "mla/inputs.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <limits>

#include <tbb/parallel_for.h>

#include "mla/error.hpp"
#include "mla/half.hpp"

namespace mla {

std::vector<int32_t> make_seqlens(const InputSpec& spec, int64_t batch, int64_t s_q) {
  if (!spec.seqlens.empty()) {
    if (static_cast<int64_t>(spec.seqlens.size()) != batch)
      fail(ErrorCode::invalid_argument, "seqlens: expected " + std::to_string(batch) + " lengths, got " +
                                            std::to_string(spec.seqlens.size()));
    return spec.seqlens;
  }
  if (spec.seqlen < 0) fail(ErrorCode::invalid_argument, "seqlen: expected >= 0, got " + std::to_string(spec.seqlen));
  std::vector<int32_t> lens(static_cast<size_t>(batch), static_cast<int32_t>(spec.seqlen));
  if (spec.varlen) {
    std::mt19937_64 rng(spec.seed ^ 0x5eed1e45ULL);
    std::normal_distribution<double> normal(static_cast<double>(spec.seqlen), static_cast<double>(spec.seqlen) / 2.0);
    for (auto& len : lens) len = static_cast<int32_t>(std::max<double>(std::round(normal(rng)), static_cast<double>(s_q)));
  }
  return lens;
}

namespace {

// Counter-based random numbers: chunk k of a tensor always gets the same values whatever the
// thread count, so inputs are reproducible from the seed alone and fill in parallel.
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr int64_t kFillChunk = 1 << 16;

// Uniform values with unit variance times `scale` (never exactly zero in practice).
void fill_random(HostTensor& t, uint64_t seed, double scale) {
  const int64_t n = t.view().numel();
  const int64_t chunks = (n + kFillChunk - 1) / kFillChunk;
  const float amplitude = static_cast<float>(std::sqrt(3.0) * scale);
  tbb::parallel_for(int64_t{0}, chunks, [&](int64_t c) {
    uint64_t state = seed * 0x2545f4914f6cdd1dULL + static_cast<uint64_t>(c);
    const int64_t begin = c * kFillChunk, end = std::min(n, begin + kFillChunk);
    std::vector<float> values(static_cast<size_t>(end - begin));
    for (auto& v : values) {
      const uint64_t r = splitmix64(state);
      v = amplitude * (static_cast<float>(r >> 40) * (2.0f / 16777216.0f) - 1.0f);
    }
    const TensorView& view = t.view();
    switch (view.dtype) {
      case DType::bf16:
        for (int64_t i = begin; i < end; ++i) view.as<uint16_t>()[i] = float_to_bf16(values[static_cast<size_t>(i - begin)]);
        break;
      case DType::fp16:
        for (int64_t i = begin; i < end; ++i) view.as<uint16_t>()[i] = float_to_fp16(values[static_cast<size_t>(i - begin)]);
        break;
      case DType::fp32: std::copy(values.begin(), values.end(), view.as<float>() + begin); break;
      default:
        for (int64_t i = begin; i < end; ++i) t.set(i, values[static_cast<size_t>(i - begin)]);
    }
  });
}

}  // namespace

Problem random_inputs_problem(const Problem& base, const InputSpec& spec, std::vector<int32_t>* seqlens) {
  Problem p = base;
  const std::vector<int32_t> lens = make_seqlens(spec, p.batch, p.s_q);
  if (p.page_size < 1) fail(ErrorCode::invalid_argument, "problem.page_size: expected >= 1, got " + std::to_string(p.page_size));
  int64_t max_pages = 1, total_pages = 0;
  for (int32_t len : lens) {
    int64_t pages = (len + p.page_size - 1) / p.page_size;
    max_pages = std::max(max_pages, pages);
    total_pages += pages;
  }
  p.max_blocks_per_seq = std::max<int64_t>(max_pages + (spec.poison ? 1 : 0), 1);
  p.num_blocks = std::max<int64_t>(total_pages + spec.extra_blocks, 1);
  if (seqlens) *seqlens = lens;
  return p;
}

HostInputs make_random_inputs(const Problem& base, const InputSpec& spec) {
  HostInputs in;
  in.problem = random_inputs_problem(base, spec, &in.seqlens);
  Problem& p = in.problem;

  uint64_t stream = spec.seed * 1000003ULL;
  auto next_seed = [&] { return splitmix64(stream); };
  const int64_t b = p.batch, s = p.s_q, h = p.h_q;
  if (p.variant == Variant::latent) {
    in.q = HostTensor(p.dtype, {b, s, h, p.d_qk()});
    fill_random(in.q, next_seed(), 1.0);
  } else {
    in.q_nope = HostTensor(p.dtype, {b, s, h, p.d_nope});
    in.q_rope = HostTensor(p.dtype, {b, s, h, p.d_r});
    in.w_uk = HostTensor(p.dtype, {h, p.d_nope, p.d_c});
    in.w_uv = HostTensor(p.dtype, {h, p.d_c, p.d_vh});
    fill_random(in.q_nope, next_seed(), 1.0);
    fill_random(in.q_rope, next_seed(), 1.0);
    fill_random(in.w_uk, next_seed(), 1.0 / std::sqrt(static_cast<double>(p.d_nope)));
    fill_random(in.w_uv, next_seed(), 1.0 / std::sqrt(static_cast<double>(p.d_c)));
  }

  // Physical blocks in shuffled order so that logical order never matches physical order.
  std::vector<int32_t> physical(static_cast<size_t>(p.num_blocks));
  std::iota(physical.begin(), physical.end(), 0);
  std::mt19937_64 rng(next_seed());
  std::shuffle(physical.begin(), physical.end(), rng);

  // Every element random first (quantized formats: random bf16 values, then quantized with a
  // scale calibrated on them); then, with poison, every token no valid position owns gets the
  // format's poison.
  const KvFormatTraits& kv = p.kv();
  const int64_t d_qk = p.d_qk();
  const bool quantized = kv.scale != KvScaleKind::none;
  HostTensor values(quantized ? DType::bf16 : kv.element, {p.num_blocks, p.page_size, p.h_kv, d_qk});
  fill_random(values, next_seed(), 1.0);
  if (spec.kv_outlier_channels > 0) {
    const int64_t step = std::max<int64_t>(1, d_qk / spec.kv_outlier_channels);
    for (int64_t row = 0; row < p.num_blocks * p.page_size * p.h_kv; ++row)
      for (int64_t c = 0, n = 0; c < d_qk && n < spec.kv_outlier_channels; c += step, ++n)
        values.set(row * d_qk + c, 32.0 * values.get(row * d_qk + c));
  }
  in.block_table = HostTensor(DType::int32, {b, p.max_blocks_per_seq});
  if (spec.poison) in.block_table.fill_nan();  // junk ids everywhere, then the used pages get real ones
  else std::fill_n(in.block_table.as<int32_t>(), b * p.max_blocks_per_seq, 0);

  std::vector<char> valid_token(static_cast<size_t>(p.num_blocks * p.page_size), 0);
  size_t next = 0;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t len = in.seqlens[static_cast<size_t>(i)];
    const int64_t pages = (len + p.page_size - 1) / p.page_size;
    for (int64_t j = 0; j < pages; ++j) {
      const int32_t block = physical[next++];
      in.block_table.as<int32_t>()[i * p.max_blocks_per_seq + j] = block;
      const int64_t valid = std::min(p.page_size, len - j * p.page_size);
      std::fill_n(&valid_token[static_cast<size_t>(block * p.page_size)], valid, 1);
    }
  }

  if (quantized) {
    std::vector<float> amax(static_cast<size_t>(d_qk), 0.0f), token(static_cast<size_t>(d_qk));
    for (int64_t slot = 0; slot < p.num_blocks * p.page_size; ++slot)
      for (int64_t g = 0; g < p.h_kv; ++g)
        for (int64_t c = 0; c < d_qk; ++c)
          amax[static_cast<size_t>(c)] =
              std::max(amax[static_cast<size_t>(c)], static_cast<float>(std::fabs(values.get((slot * p.h_kv + g) * d_qk + c))));
    const std::vector<int64_t> scale_shape = kv_scale_shape(p.kv_format, p.d_c, p.d_r);
    if (!scale_shape.empty()) {
      in.kv_scale = HostTensor(DType::fp32, scale_shape);
      const std::vector<float> scale = kv_scale_from_amax(p.kv_format, amax);
      std::copy(scale.begin(), scale.end(), in.kv_scale.as<float>());
    }
    in.kv_cache = HostTensor(kv.element, {p.num_blocks, p.page_size, p.h_kv, p.kv_token_elements()});
    const auto* scale = in.kv_scale.defined() ? in.kv_scale.as<const float>() : nullptr;
    const int64_t token_bytes = kv_token_bytes(p.kv_format, p.d_c, p.d_r);
    for (int64_t row = 0; row < p.num_blocks * p.page_size * p.h_kv; ++row) {
      for (int64_t c = 0; c < d_qk; ++c) token[static_cast<size_t>(c)] = static_cast<float>(values.get(row * d_qk + c));
      kv.quantize(token.data(), scale, p.d_c, p.d_r, in.kv_cache.as<char>() + row * token_bytes);
    }
    in.kv_unquantized = values;
  } else {
    in.kv_cache = values;
  }
  if (spec.poison) {
    const int64_t token_bytes = kv_token_bytes(p.kv_format, p.d_c, p.d_r);
    for (int64_t slot = 0; slot < p.num_blocks * p.page_size; ++slot) {
      if (valid_token[static_cast<size_t>(slot)]) continue;
      for (int64_t g = 0; g < p.h_kv; ++g) {
        kv.poison(in.kv_cache.as<char>() + (slot * p.h_kv + g) * token_bytes, p.d_c, p.d_r);
        if (quantized) kv_format_traits(KvFormat::bf16).poison(in.kv_unquantized.as<uint16_t>() + (slot * p.h_kv + g) * d_qk, p.d_c, p.d_r);
      }
    }
  }

  in.cache_seqlens = HostTensor(DType::int32, {b});
  std::copy(in.seqlens.begin(), in.seqlens.end(), in.cache_seqlens.as<int32_t>());
  in.out = HostTensor(p.dtype, {b, s, h, p.out_width()});
  in.lse = HostTensor(DType::fp32, {b, h, s});
  in.poison_outputs();
  return in;
}

namespace {
size_t operand_index(const RunOperand& operand) {
  for (size_t i = 0; i < std::size(kRunOperands); ++i)
    if (kRunOperands[i].member == operand.member) return i;
  fail(ErrorCode::internal, std::string("host_operand: no operand \"") + operand.name + "\"");
}
}  // namespace

HostTensor& host_operand(HostInputs& in, const RunOperand& operand) { return in.*kHostOperands[operand_index(operand)]; }
const HostTensor& host_operand(const HostInputs& in, const RunOperand& operand) {
  return in.*kHostOperands[operand_index(operand)];
}
bool is_output_operand(const RunOperand& operand) {
  return operand.member == &RunArgs::out || operand.member == &RunArgs::lse;
}

RunArgs HostInputs::args() const {
  RunArgs a;
  for (const RunOperand& op : kRunOperands) a.*op.member = host_operand(*this, op).view();
  return a;
}

HostInputs HostInputs::unquantized() const {
  if (!kv_unquantized.defined()) fail(ErrorCode::internal, "HostInputs::unquantized: the cache is not quantized");
  HostInputs u = *this;
  u.problem.kv_format = KvFormat::bf16;
  u.kv_cache = kv_unquantized;
  u.kv_scale = HostTensor();
  u.kv_unquantized = HostTensor();
  u.out = HostTensor(out.view().dtype, {problem.batch, problem.s_q, problem.h_q, problem.out_width()});
  u.lse = HostTensor(DType::fp32, {problem.batch, problem.h_q, problem.s_q});
  u.poison_outputs();
  return u;
}

void HostInputs::poison_outputs() {
  out.fill_nan();
  lse.fill_nan();
}

double HostInputs::mean_seqlen() const {
  if (seqlens.empty()) return 0;
  return std::accumulate(seqlens.begin(), seqlens.end(), 0.0) / static_cast<double>(seqlens.size());
}

Problem infer_problem_from_tensors(Problem p, const RunArgs& a) {
  auto need = [](const TensorView& t, const char* name, int rank) {
    if (t.rank != rank)
      fail(ErrorCode::invalid_argument,
           std::string(name) + ": expected rank " + std::to_string(rank) + ", got " + t.describe());
  };
  need(a.kv_cache, "kv_cache", 4);
  need(a.block_table, "block_table", 2);
  need(a.cache_seqlens, "cache_seqlens", 1);
  const TensorView& query = p.variant == Variant::latent ? a.q : a.q_nope;
  need(query, p.variant == Variant::latent ? "q" : "q_nope", 4);
  p.batch = query.shape[0];
  p.s_q = query.shape[1];
  p.h_q = query.shape[2];
  p.dtype = query.dtype;
  p.num_blocks = a.kv_cache.shape[0];
  p.page_size = a.kv_cache.shape[1];
  p.h_kv = a.kv_cache.shape[2];
  const std::optional<KvFormat> format = kv_format_of_element(a.kv_cache.dtype);
  if (!format)
    fail(ErrorCode::invalid_argument, std::string("kv_cache: no KV format stores ") + dtype_name(a.kv_cache.dtype) +
                                          " elements (formats: " + kv_format_names() + ")");
  p.kv_format = *format;
  p.max_blocks_per_seq = a.block_table.shape[1];
  if (p.variant == Variant::latent) {
    p.d_c = a.q.shape[3] - p.d_r;
  } else {
    need(a.w_uk, "w_uk", 3);
    need(a.w_uv, "w_uv", 3);
    need(a.q_rope, "q_rope", 4);
    p.d_nope = a.q_nope.shape[3];
    p.d_r = a.q_rope.shape[3];
    p.d_c = a.w_uk.shape[2];
    p.d_vh = a.w_uv.shape[2];
  }
  return p;
}

}  // namespace mla
