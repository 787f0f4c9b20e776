// What one MLA decode call computes (DESIGN 2.1, 2.2) and the tensors it is given.
#pragma once

#include <cstdint>
#include <string>

#include "mla/dtype.hpp"
#include "mla/kv_format.hpp"
#include "mla/tensor.hpp"

namespace mla {

// 2.1: attention over the latent cache with an already absorbed query q [b, s_q, h_q, d_qk].
// 2.2: the up-projections are applied inside: q_nope @ w_uk before, o_latent @ w_uv after.
enum class Variant : int { latent = 0, absorb = 1 };
const char* variant_name(Variant variant);

struct Problem {
  Variant variant = Variant::latent;
  int64_t batch = 1;              // b
  int64_t s_q = 1;                // query tokens per sequence
  int64_t h_q = 128;              // query heads
  int64_t h_kv = 1;               // latent KV heads
  int64_t d_c = 512;              // latent width (= d_v)
  int64_t d_r = 64;               // rotary width
  int64_t d_nope = 128;           // absorb only: per-head no-rope query width
  int64_t d_vh = 128;             // absorb only: per-head output width after w_uv
  int64_t page_size = 64;         // tokens per KV block
  int64_t num_blocks = 0;         // physical blocks in kv_cache
  int64_t max_blocks_per_seq = 0; // columns of block_table
  bool causal = false;
  float softmax_scale = 0.0f;     // 0 means the default of the variant (see effective_scale)
  DType dtype = DType::bf16;      // q / q_nope / q_rope / weights / out
  KvFormat kv_format = KvFormat::bf16;  // kv_cache storage (mla/kv_format.hpp)

  [[nodiscard]] int64_t d_qk() const { return d_c + d_r; }
  [[nodiscard]] int64_t d_v() const { return d_c; }
  [[nodiscard]] int64_t out_width() const { return variant == Variant::absorb ? d_vh : d_c; }
  [[nodiscard]] int64_t heads_per_kv() const { return h_q / h_kv; }
  [[nodiscard]] const KvFormatTraits& kv() const { return kv_format_traits(kv_format); }
  // The kv_cache tensor's last dimension (elements of kv().element per token and KV head).
  [[nodiscard]] int64_t kv_token_elements() const { return kv().token_elements(d_c, d_r); }
  [[nodiscard]] float effective_scale() const;  // 1/sqrt(d_qk) or 1/sqrt(d_nope + d_r) by default
  [[nodiscard]] std::string describe() const;   // one line, for logs and reports
};

// The tensors of one call. Which ones are needed depends on the variant; the others stay empty.
struct RunArgs {
  TensorView q;              // latent: [b, s_q, h_q, d_qk]
  TensorView q_nope;         // absorb: [b, s_q, h_q, d_nope]
  TensorView q_rope;         // absorb: [b, s_q, h_q, d_r]
  TensorView w_uk;           // absorb: [h_q, d_nope, d_c]
  TensorView w_uv;           // absorb: [h_q, d_c, d_vh]
  TensorView kv_cache;       // [num_blocks, page_size, h_kv, kv_token_elements()] of kv().element
  TensorView kv_scale;       // fp32 [1] (fp8_e4m3) or [d_qk] (int8); empty for other formats
  TensorView block_table;    // int32 [b, max_blocks_per_seq]
  TensorView cache_seqlens;  // int32 [b]
  TensorView out;            // [b, s_q, h_q, out_width], dtype of q
  TensorView lse;            // fp32 [b, h_q, s_q]
};

// Every operand of RunArgs with its name (safetensors files, messages, the C ABI), so code
// that walks all operands has one list; the static_assert keeps it complete.
struct RunOperand {
  const char* name;
  TensorView RunArgs::*member;
};
inline constexpr RunOperand kRunOperands[] = {
    {"q", &RunArgs::q},         {"q_nope", &RunArgs::q_nope},     {"q_rope", &RunArgs::q_rope},
    {"w_uk", &RunArgs::w_uk},   {"w_uv", &RunArgs::w_uv},         {"kv_cache", &RunArgs::kv_cache},
    {"kv_scale", &RunArgs::kv_scale}, {"block_table", &RunArgs::block_table},
    {"cache_seqlens", &RunArgs::cache_seqlens}, {"out", &RunArgs::out}, {"lse", &RunArgs::lse},
};
static_assert(sizeof(RunArgs) == sizeof(kRunOperands) / sizeof(kRunOperands[0]) * sizeof(TensorView),
              "kRunOperands must list every RunArgs field");

// Last key a query token may see (exclusive bound): the causal rule of DESIGN 2.1.
inline int64_t visible_keys(const Problem& p, int64_t seqlen, int64_t t) {
  if (!p.causal || p.s_q == 1) return seqlen;
  int64_t n = seqlen - p.s_q + t + 1;
  return n < 0 ? 0 : (n > seqlen ? seqlen : n);
}

}  // namespace mla
