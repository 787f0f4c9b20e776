// C structs <-> C++ types. The C enums carry the C++ values (checked below), so conversion is
// a range check plus a cast; a value outside the range is the caller's error, said as such.
#include <iterator>
#include <optional>
#include <string>

#include "c_api_internal.hpp"
#include "mla/problem.hpp"

namespace mla::c_api {

static_assert(MLA_MAX_RANK == kMaxRank);
static_assert(MLA_ERROR_INTERNAL == static_cast<int>(ErrorCode::internal));
static_assert(MLA_ERROR_INVALID_CONFIG == static_cast<int>(ErrorCode::invalid_config));
static_assert(MLA_ERROR_BACKEND_UNAVAILABLE == static_cast<int>(ErrorCode::backend_unavailable));
static_assert(MLA_DTYPE_BF16 == static_cast<int>(DType::bf16) && MLA_DTYPE_FP32 == static_cast<int>(DType::fp32));
static_assert(MLA_DTYPE_INT32 == static_cast<int>(DType::int32) && MLA_DTYPE_FP64 == static_cast<int>(DType::fp64));
static_assert(MLA_MEMORY_DEVICE == static_cast<int>(MemorySpace::device));
static_assert(MLA_VARIANT_ABSORB == static_cast<int>(Variant::absorb));
static_assert(MLA_DTYPE_UINT8 == static_cast<int>(DType::uint8));
static_assert(MLA_KV_FORMAT_BF16 == static_cast<int>(KvFormat::bf16) && MLA_KV_FORMAT_INT8 == static_cast<int>(KvFormat::int8));
static_assert(MLA_KV_FORMAT_FP8_DS_MLA == static_cast<int>(KvFormat::fp8_ds_mla));
static_assert(MLA_COPY_DEVICE_TO_DEVICE == static_cast<int>(CopyKind::device_to_device));

namespace {

int32_t checked_enum(int32_t value, int32_t last, const std::string& field) {
  if (value < 0 || value > last)
    fail(ErrorCode::invalid_argument,
         field + ": expected a value in [0, " + std::to_string(last) + "], got " + std::to_string(value));
  return value;
}

DType to_dtype(int32_t value, const std::string& field) {
  return static_cast<DType>(checked_enum(value, MLA_DTYPE_UINT8, field));
}

// The C struct's operands next to the C++ ones; the static_assert keeps the two complete.
struct COperand {
  mla_tensor mla_tensors::*c;
  TensorView RunArgs::*cpp;
};
constexpr COperand kCOperands[] = {
    {&mla_tensors::q, &RunArgs::q},
    {&mla_tensors::q_nope, &RunArgs::q_nope},
    {&mla_tensors::q_rope, &RunArgs::q_rope},
    {&mla_tensors::w_uk, &RunArgs::w_uk},
    {&mla_tensors::w_uv, &RunArgs::w_uv},
    {&mla_tensors::kv_cache, &RunArgs::kv_cache},
    {&mla_tensors::kv_scale, &RunArgs::kv_scale},
    {&mla_tensors::block_table, &RunArgs::block_table},
    {&mla_tensors::cache_seqlens, &RunArgs::cache_seqlens},
    {&mla_tensors::out, &RunArgs::out},
    {&mla_tensors::lse, &RunArgs::lse},
};
static_assert(std::size(kCOperands) == std::size(kRunOperands), "every RunArgs operand needs its mla_tensors field");

const char* operand_name(TensorView RunArgs::*member) {
  for (const RunOperand& op : kRunOperands)
    if (op.member == member) return op.name;
  return "operand";
}

KvFormat problem_kv_format(const mla_problem& c) {
  if (c.kv_format != MLA_KV_FORMAT_FROM_DTYPE) return to_kv_format(c.kv_format, "problem.kv_format");
  if (c.kv_scaling != MLA_KV_SCALING_NONE)
    fail(ErrorCode::invalid_argument,
         "problem.kv_scaling: quantized caches are named by problem.kv_format (fp8_e4m3, fp8_ds_mla, int8); "
         "leave kv_scaling at MLA_KV_SCALING_NONE");
  const DType dtype = to_dtype(c.kv_dtype, "problem.kv_dtype");
  const std::optional<KvFormat> plain = plain_kv_format(dtype);
  if (!plain)
    fail(ErrorCode::invalid_argument, std::string("problem.kv_dtype: ") + dtype_name(dtype) +
                                          " is not a plain cache dtype (bf16, fp16, fp32); name a quantized "
                                          "cache with problem.kv_format");
  return *plain;
}

}  // namespace

KvFormat to_kv_format(int32_t value, const std::string& field) {
  // Up to the last value of the traits table: a new format needs no edit here.
  const auto last = static_cast<int32_t>(kv_formats().back().format);
  if (value == MLA_KV_FORMAT_FROM_DTYPE)
    fail(ErrorCode::invalid_argument, field + ": name the cache's format (an MLA_KV_FORMAT_* value from 1 to " +
                                          std::to_string(last) + "), not MLA_KV_FORMAT_FROM_DTYPE");
  return static_cast<KvFormat>(checked_enum(value, last, field));
}

Problem read_problem(const mla_problem* problem) {
  require_struct(problem, problem ? problem->struct_size : 0, MLA_C_API_V1_SIZE(mla_problem, kv_scale_tile),
                 "mla_problem");
  mla_problem defaults;
  mla_problem_init(&defaults);
  return to_problem(read_struct(*problem, defaults));
}

TensorView to_view(const mla_tensor& tensor, const char* name) {
  const std::string field = name;
  TensorView view;
  view.data = tensor.data;
  view.dtype = to_dtype(tensor.dtype, field + ".dtype");
  view.rank = checked_enum(tensor.rank, MLA_MAX_RANK, field + ".rank");
  view.space = static_cast<MemorySpace>(checked_enum(tensor.space, MLA_MEMORY_DEVICE, field + ".space"));
  for (int d = 0; d < kMaxRank; ++d) {
    view.shape[static_cast<size_t>(d)] = tensor.shape[d];
    view.strides[static_cast<size_t>(d)] = tensor.strides[d];
  }
  return view;
}

RunArgs to_run_args(const mla_tensors& tensors) {
  RunArgs args;
  for (const COperand& op : kCOperands) args.*op.cpp = to_view(tensors.*op.c, operand_name(op.cpp));
  return args;
}

Problem to_problem(const mla_problem& c) {
  Problem p;
  p.variant = static_cast<Variant>(checked_enum(c.variant, MLA_VARIANT_ABSORB, "problem.variant"));
  p.batch = c.batch;
  p.s_q = c.s_q;
  p.h_q = c.h_q;
  p.h_kv = c.h_kv;
  p.d_c = c.d_c;
  p.d_r = c.d_r;
  p.d_nope = c.d_nope;
  p.d_vh = c.d_vh;
  p.page_size = c.page_size;
  p.num_blocks = c.num_blocks;
  p.max_blocks_per_seq = c.max_blocks_per_seq;
  p.causal = c.causal != 0;
  p.softmax_scale = c.softmax_scale;
  p.dtype = to_dtype(c.dtype, "problem.dtype");
  p.kv_format = problem_kv_format(c);
  return p;
}

mla_problem from_problem(const Problem& p) {
  mla_problem c{};
  c.struct_size = sizeof(mla_problem);
  c.variant = static_cast<int32_t>(p.variant);
  c.batch = p.batch;
  c.s_q = p.s_q;
  c.h_q = p.h_q;
  c.h_kv = p.h_kv;
  c.d_c = p.d_c;
  c.d_r = p.d_r;
  c.d_nope = p.d_nope;
  c.d_vh = p.d_vh;
  c.page_size = p.page_size;
  c.num_blocks = p.num_blocks;
  c.max_blocks_per_seq = p.max_blocks_per_seq;
  c.causal = p.causal ? 1 : 0;
  c.softmax_scale = p.softmax_scale;
  c.dtype = static_cast<int32_t>(p.dtype);
  c.kv_dtype = static_cast<int32_t>(p.kv().element);
  c.kv_scaling = MLA_KV_SCALING_NONE;
  c.kv_scale_tile = 0;
  c.kv_format = static_cast<int32_t>(p.kv_format);
  return c;
}

}  // namespace mla::c_api
