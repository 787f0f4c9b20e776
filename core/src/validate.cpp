#include "mla/validate.hpp"

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "mla/error.hpp"

namespace mla {

namespace {

[[noreturn]] void bad(const std::string& message) { fail(ErrorCode::invalid_argument, message); }

void require_range(const char* field, int64_t value, int64_t min, int64_t max) {
  if (value < min || value > max) {
    std::ostringstream os;
    os << "problem." << field << ": expected " << min << " <= value <= " << max << ", got " << value;
    bad(os.str());
  }
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

// One tensor against its expected dtype and shape. Strides may differ from dense, but the
// last dimension must be contiguous and no stride may be negative.
void check_tensor(const char* name, const TensorView& t, DType dtype, const std::vector<int64_t>& shape,
                  MemorySpace space) {
  std::string expected = std::string(dtype_name(dtype)) + " " + shape_text(shape);
  bool shape_ok = t.rank == static_cast<int>(shape.size());
  for (int d = 0; shape_ok && d < t.rank; ++d) shape_ok = t.shape[d] == shape[static_cast<size_t>(d)];
  if (t.dtype != dtype || !shape_ok) {
    std::string given = t.rank == 0 && t.data == nullptr ? std::string("an empty tensor") : t.describe();
    bad(std::string(name) + ": expected " + expected + ", got " + given);
  }
  if (t.data == nullptr) bad(std::string(name) + ": data pointer is null (expected " + expected + ")");
  if (t.space != space)
    bad(std::string(name) + ": expected " + memory_space_name(space) + " memory, got " + memory_space_name(t.space) +
        " memory");
  size_t align = dtype_size(dtype);
  if (reinterpret_cast<uintptr_t>(t.data) % align != 0)
    bad(std::string(name) + ": data pointer is not aligned to its element size (" + std::to_string(align) +
        " bytes)");
  if (t.rank > 0 && t.shape[t.rank - 1] > 1 && t.strides[t.rank - 1] != 1)
    bad(std::string(name) + ": the last dimension must be contiguous (stride 1), got stride " +
        std::to_string(t.strides[t.rank - 1]));
  for (int d = 0; d < t.rank; ++d)
    if (t.strides[d] < 0)
      bad(std::string(name) + ": negative stride " + std::to_string(t.strides[d]) + " in dimension " +
          std::to_string(d));
  // Rows must not overlap: each outer stride at least spans the inner extent.
  for (int d = t.rank - 2; d >= 0; --d) {
    int64_t inner_span = t.strides[d + 1] * t.shape[d + 1];
    if (t.shape[d] > 1 && t.strides[d] < inner_span)
      bad(std::string(name) + ": stride " + std::to_string(t.strides[d]) + " of dimension " + std::to_string(d) +
          " overlaps the dimension inside it (needs >= " + std::to_string(inner_span) + ")");
  }
}

void check_unused(const char* name, const TensorView& t, Variant variant) {
  if (t.data != nullptr || t.rank != 0)
    bad(std::string(name) + ": not used by the " + variant_name(variant) + " variant; leave it empty");
}

}  // namespace

void check_packed_token_alignment(const char* name, const TensorView& kv_cache, KvFormat format) {
  if (kv_format_traits(format).scale != KvScaleKind::in_token) return;
  bool aligned = reinterpret_cast<uintptr_t>(kv_cache.data) % 4 == 0;
  for (int d = 0; d < 3 && d < kv_cache.rank; ++d) aligned = aligned && kv_cache.strides[d] % 4 == 0;
  if (!aligned)
    bad(std::string(name) + ": the " + kv_format_name(format) +
        " layout holds float32 scales inside each token: its pointer and its block, token and head strides must be "
        "multiples of 4 bytes");
}

void check_kv_scale(const TensorView& kv_scale, KvFormat format, int64_t d_c, int64_t d_r, MemorySpace space) {
  const std::vector<int64_t> shape = kv_scale_shape(format, d_c, d_r);
  if (shape.empty()) {
    if (!kv_scale.empty())
      bad(std::string("kv_scale: the ") + kv_format_name(format) + " KV format takes no kv_scale; leave it empty");
    return;
  }
  check_tensor("kv_scale", kv_scale, DType::fp32, shape, space);
}

void validate_problem(const Problem& p) {
  require_range("batch", p.batch, 1, 1 << 20);
  require_range("s_q", p.s_q, 1, 1024);
  require_range("h_q", p.h_q, 1, 4096);
  require_range("h_kv", p.h_kv, 1, 4096);
  if (p.h_q % p.h_kv != 0)
    bad("problem.h_q: expected a multiple of h_kv = " + std::to_string(p.h_kv) + ", got " + std::to_string(p.h_q));
  require_range("d_c", p.d_c, 1, 1 << 16);
  require_range("d_r", p.d_r, 0, 1 << 16);
  require_range("page_size", p.page_size, 1, 1 << 20);
  require_range("num_blocks", p.num_blocks, 1, INT32_MAX);
  require_range("max_blocks_per_seq", p.max_blocks_per_seq, 1, INT32_MAX);
  if (p.max_blocks_per_seq * p.page_size > INT32_MAX)
    bad("problem.max_blocks_per_seq: max_blocks_per_seq * page_size must fit int32 lengths, got " +
        std::to_string(p.max_blocks_per_seq) + " * " + std::to_string(p.page_size));
  if (p.variant == Variant::absorb) {
    require_range("d_nope", p.d_nope, 1, 1 << 16);
    require_range("d_vh", p.d_vh, 1, 1 << 16);
  }
  if (!std::isfinite(p.softmax_scale))
    bad("problem.softmax_scale: expected a finite value (0 for the default), got " + std::to_string(p.softmax_scale));
  if (!is_float_activation(p.dtype))
    bad(std::string("problem.dtype: expected bf16, fp16 or fp32, got ") + dtype_name(p.dtype));
  const KvFormatTraits& kv = kv_format_traits(p.kv_format);  // throws for a value outside the enum
  if (kv.scale == KvScaleKind::in_token && (p.d_c % kKvScaleGroup != 0))
    bad(std::string("problem.d_c: the ") + kv.name + " KV format needs d_c a multiple of " +
        std::to_string(kKvScaleGroup) + " (one scale per " + std::to_string(kKvScaleGroup) + " latent values), got " +
        std::to_string(p.d_c));
}

void validate_outputs(const Problem& p, const TensorView& out, const TensorView& lse, MemorySpace space) {
  check_tensor("out", out, p.dtype, {p.batch, p.s_q, p.h_q, p.out_width()}, space);
  check_tensor("lse", lse, DType::fp32, {p.batch, p.h_q, p.s_q}, space);
}

void validate_seqlens_tensor(const Problem& p, const TensorView& seqlens, MemorySpace space) {
  check_tensor("cache_seqlens", seqlens, DType::int32, {p.batch}, space);
}

void validate_args(const Problem& p, const RunArgs& a, MemorySpace space) {
  const int64_t b = p.batch, s = p.s_q, h = p.h_q;
  if (p.variant == Variant::latent) {
    check_tensor("q", a.q, p.dtype, {b, s, h, p.d_qk()}, space);
    check_unused("q_nope", a.q_nope, p.variant);
    check_unused("q_rope", a.q_rope, p.variant);
    check_unused("w_uk", a.w_uk, p.variant);
    check_unused("w_uv", a.w_uv, p.variant);
  } else {
    check_unused("q", a.q, p.variant);
    check_tensor("q_nope", a.q_nope, p.dtype, {b, s, h, p.d_nope}, space);
    check_tensor("q_rope", a.q_rope, p.dtype, {b, s, h, p.d_r}, space);
    check_tensor("w_uk", a.w_uk, p.dtype, {h, p.d_nope, p.d_c}, space);
    check_tensor("w_uv", a.w_uv, p.dtype, {h, p.d_c, p.d_vh}, space);
  }
  check_tensor("kv_cache", a.kv_cache, p.kv().element, {p.num_blocks, p.page_size, p.h_kv, p.kv_token_elements()},
               space);
  check_packed_token_alignment("kv_cache", a.kv_cache, p.kv_format);
  check_kv_scale(a.kv_scale, p.kv_format, p.d_c, p.d_r, space);
  check_tensor("block_table", a.block_table, DType::int32, {b, p.max_blocks_per_seq}, space);
  check_tensor("cache_seqlens", a.cache_seqlens, DType::int32, {b}, space);
  check_tensor("out", a.out, p.dtype, {b, s, h, p.out_width()}, space);
  check_tensor("lse", a.lse, DType::fp32, {b, h, s}, space);
}

void validate_seqlens(const Problem& p, const int32_t* seqlens) {
  const int64_t capacity = p.max_blocks_per_seq * p.page_size;
  for (int64_t i = 0; i < p.batch; ++i) {
    if (seqlens[i] < 0 || seqlens[i] > capacity)
      bad("cache_seqlens[" + std::to_string(i) + "]: expected 0 <= length <= " + std::to_string(capacity) +
          " (max_blocks_per_seq * page_size), got " + std::to_string(seqlens[i]));
  }
}

void validate_indices(const Problem& p, const int32_t* seqlens, const int32_t* block_table, int64_t row_stride) {
  validate_seqlens(p, seqlens);
  for (int64_t i = 0; i < p.batch; ++i) {
    const int64_t pages = (seqlens[i] + p.page_size - 1) / p.page_size;
    for (int64_t j = 0; j < pages; ++j) {
      int32_t id = block_table[i * row_stride + j];
      if (id < 0 || id >= p.num_blocks)
        bad("block_table[" + std::to_string(i) + "][" + std::to_string(j) + "]: expected a block id in [0, " +
            std::to_string(p.num_blocks) + "), got " + std::to_string(id));
    }
  }
}

}  // namespace mla
