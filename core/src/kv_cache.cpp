#include "mla/kv_cache.hpp"

#include <string>
#include <vector>

#include "mla/error.hpp"
#include "mla/host_tensor.hpp"
#include "mla/validate.hpp"

namespace mla {

void gather_keys_f32(const Problem& p, const RunArgs& a, int64_t seq, int64_t kv_head, int64_t begin, int64_t count,
                     float* out) {
  const KvFormatTraits& kv = p.kv();
  const auto* scale = static_cast<const float*>(a.kv_scale.data);
  const int32_t* row = a.block_table.as<const int32_t>() + seq * a.block_table.strides[0];
  const int64_t d_qk = p.d_qk();
  for (int64_t j = 0; j < count; ++j) {
    const int64_t token = begin + j;
    kv.dequantize(kv_token(a.kv_cache, row[token / p.page_size], token % p.page_size, kv_head), scale, p.d_c, p.d_r,
                  out + j * d_qk);
  }
}

namespace {

[[noreturn]] void bad(const std::string& message) { fail(ErrorCode::invalid_argument, message); }

// The token count, KV heads and width of a [T, w] or [T, h_kv, w] input.
struct TokenRows {
  int64_t tokens = 0, heads = 1, width = 0;
};

TokenRows token_rows(const char* name, const TensorView& t) {
  if (t.rank != 2 && t.rank != 3)
    bad(std::string("write_kv.") + name + ": expected rank 2 [T, width] or 3 [T, h_kv, width], got " +
        (t.empty() ? std::string("an empty tensor") : t.describe()));
  TokenRows r;
  r.tokens = t.shape[0];
  r.heads = t.rank == 3 ? t.shape[1] : 1;
  r.width = t.shape[t.rank - 1];
  if (t.data == nullptr && r.tokens * r.heads * r.width > 0) bad(std::string("write_kv.") + name + ": data pointer is null");
  if (t.rank > 0 && t.shape[t.rank - 1] > 1 && t.strides[t.rank - 1] != 1)
    bad(std::string("write_kv.") + name + ": the last dimension must be contiguous (stride 1)");
  for (int d = 0; d < t.rank; ++d)
    if (t.strides[d] < 0) bad(std::string("write_kv.") + name + ": negative stride in dimension " + std::to_string(d));
  return r;
}

void need_space(const char* name, const TensorView& t, MemorySpace space) {
  if (t.space != space)
    bad(std::string("write_kv.") + name + ": expected " + memory_space_name(space) + " memory, got " +
        memory_space_name(t.space) + " memory");
}

}  // namespace

void validate_write_kv(const WriteKvArgs& a, MemorySpace space) {
  const KvFormatTraits& kv = kv_format_traits(a.kv_format);
  const TokenRows c = token_rows("kv_c", a.kv_c), r = token_rows("k_pe", a.k_pe);
  if (!is_float_activation(a.kv_c.dtype))
    bad(std::string("write_kv.kv_c: expected bf16, fp16 or fp32, got ") + dtype_name(a.kv_c.dtype));
  if (a.k_pe.dtype != a.kv_c.dtype)
    bad(std::string("write_kv.k_pe: expected the dtype of kv_c (") + dtype_name(a.kv_c.dtype) + "), got " +
        dtype_name(a.k_pe.dtype));
  if (r.tokens != c.tokens || r.heads != c.heads || a.k_pe.rank != a.kv_c.rank)
    bad("write_kv.k_pe: expected " + std::to_string(c.tokens) + " tokens" +
        (a.kv_c.rank == 3 ? " x " + std::to_string(c.heads) + " heads" : std::string()) + " like kv_c, got " +
        a.k_pe.describe());
  if (kv.scale == KvScaleKind::in_token && c.width % kKvScaleGroup != 0)
    bad(std::string("write_kv.kv_c: the ") + kv.name + " format needs a latent width that is a multiple of " +
        std::to_string(kKvScaleGroup) + ", got " + std::to_string(c.width));
  need_space("kv_c", a.kv_c, space);
  need_space("k_pe", a.k_pe, space);

  const TensorView& s = a.slot_mapping;
  if (s.dtype != DType::int64 || s.rank != 1 || s.shape[0] != c.tokens)
    bad("write_kv.slot_mapping: expected int64 [" + std::to_string(c.tokens) + "], got " +
        (s.empty() ? std::string("an empty tensor") : s.describe()));
  if (s.data == nullptr && c.tokens > 0) bad("write_kv.slot_mapping: data pointer is null");
  if (c.tokens > 1 && s.strides[0] != 1) bad("write_kv.slot_mapping: expected a contiguous vector");
  need_space("slot_mapping", s, space);

  const TensorView& cache = a.kv_cache;
  const int64_t width = kv.token_elements(c.width, r.width);
  if (cache.rank != 4 || cache.dtype != kv.element || cache.shape[2] != c.heads || cache.shape[3] != width)
    bad(std::string("write_kv.kv_cache: expected ") + dtype_name(kv.element) + " [num_blocks, page_size, " +
        std::to_string(c.heads) + ", " + std::to_string(width) + "] for the " + kv.name + " format with d_c " +
        std::to_string(c.width) + " and d_r " + std::to_string(r.width) + ", got " +
        (cache.empty() ? std::string("an empty tensor") : cache.describe()));
  if (cache.data == nullptr) bad("write_kv.kv_cache: data pointer is null");
  if (cache.strides[3] != 1 && width > 1) bad("write_kv.kv_cache: the last dimension must be contiguous (stride 1)");
  if (cache.shape[0] < 1 || cache.shape[1] < 1) bad("write_kv.kv_cache: expected at least one block of one token");
  need_space("kv_cache", cache, space);
  check_packed_token_alignment("write_kv.kv_cache", cache, a.kv_format);
  check_kv_scale(a.kv_scale, a.kv_format, c.width, r.width, space);
}

void validate_slots(const WriteKvArgs& a, const int64_t* slots) {
  const int64_t capacity = a.kv_cache.shape[0] * a.kv_cache.shape[1];
  for (int64_t t = 0; t < a.slot_mapping.shape[0]; ++t)
    if (slots[t] >= capacity)
      bad("write_kv.slot_mapping[" + std::to_string(t) + "]: expected a slot < num_blocks * page_size = " +
          std::to_string(capacity) + " (or negative to skip), got " + std::to_string(slots[t]));
}

void write_kv_host(const WriteKvArgs& a) {
  validate_write_kv(a, MemorySpace::host);
  const int64_t* slots = a.slot_mapping.as<const int64_t>();
  validate_slots(a, slots);
  const KvFormatTraits& kv = kv_format_traits(a.kv_format);
  const TokenRows c = token_rows("kv_c", a.kv_c), r = token_rows("k_pe", a.k_pe);
  const int64_t page = a.kv_cache.shape[1], d_c = c.width, d_r = r.width;
  const auto* scale = static_cast<const float*>(a.kv_scale.data);
  std::vector<float> values(static_cast<size_t>(d_c + d_r));
  auto row = [](const TensorView& t, int64_t token, int64_t head) {
    const int64_t off = token * t.strides[0] + (t.rank == 3 ? head * t.strides[1] : 0);
    return static_cast<const char*>(t.data) + off * static_cast<int64_t>(dtype_size(t.dtype));
  };
  for (int64_t t = 0; t < c.tokens; ++t) {
    if (slots[t] < 0) continue;
    for (int64_t h = 0; h < c.heads; ++h) {
      for (int64_t i = 0; i < d_c; ++i) values[static_cast<size_t>(i)] = static_cast<float>(load_element(row(a.kv_c, t, h), a.kv_c.dtype, i));
      for (int64_t i = 0; i < d_r; ++i)
        values[static_cast<size_t>(d_c + i)] = static_cast<float>(load_element(row(a.k_pe, t, h), a.k_pe.dtype, i));
      kv.quantize(values.data(), scale, d_c, d_r, const_cast<void*>(kv_token(a.kv_cache, slots[t] / page, slots[t] % page, h)));
    }
  }
}

}  // namespace mla
