#include "tensor_files.hpp"

#include <cmath>
#include <cstdio>

#include "mla/error.hpp"
#include "mla/safetensors.hpp"
#include "mla/validate.hpp"

namespace mla::cli {

namespace {

HostTensor take(TensorMap& tensors, const std::string& name, const std::string& path) {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail(ErrorCode::invalid_argument, path + ": missing tensor \"" + name + "\"");
  return it->second;
}

// Metadata keys. "mla.format" marks a file written by save_inputs.
constexpr const char* kFormat = "mla.format";
constexpr const char* kVariant = "mla.variant";
constexpr const char* kCausal = "mla.causal";
constexpr const char* kScale = "mla.softmax_scale";
constexpr const char* kSq = "mla.s_q";
constexpr const char* kDr = "mla.d_r";
// The bf16 values a quantized cache was made from (random inputs only), so `mla run --inputs F
// --check` can still report the quantization error.
constexpr const char* kUnquantized = "kv_unquantized";

std::string float_text(float x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(x));  // round-trips a float
  return buf;
}

Metadata problem_metadata(const Problem& p) {
  return {{kFormat, "1"},
          {kVariant, variant_name(p.variant)},
          {kCausal, p.causal ? "true" : "false"},
          {kScale, float_text(p.softmax_scale)},
          {kSq, std::to_string(p.s_q)},
          {kDr, std::to_string(p.d_r)}};
}

// Whether a problem of `variant` reads `op` from an inputs file. kv_scale depends on the KV
// format, which the kv_cache tensor names: it is read apart.
bool read_for_variant(const RunOperand& op, Variant variant) {
  if (is_output_operand(op) || op.member == &RunArgs::kv_scale) return false;
  const bool latent_only = op.member == &RunArgs::q;
  const bool absorb_only = op.member == &RunArgs::q_nope || op.member == &RunArgs::q_rope ||
                           op.member == &RunArgs::w_uk || op.member == &RunArgs::w_uv;
  if (variant == Variant::latent) return !absorb_only;
  return !latent_only;
}

[[noreturn]] void bad_metadata(const std::string& path, const std::string& key, const std::string& value) {
  fail(ErrorCode::invalid_argument, path + ": metadata \"" + key + "\" has an invalid value \"" + value + "\"");
}

// The problem flags of the file's metadata, checked against the flags given with it.
Problem problem_from_metadata(const std::string& path, const Metadata& meta, const ShapeOptions& shape) {
  Problem p = shape.problem();
  if (!meta.count(kFormat)) return p;  // not written by mla: the flags say what the tensors cannot
  auto get = [&](const char* key) -> std::string {
    auto it = meta.find(key);
    if (it == meta.end()) fail(ErrorCode::invalid_argument, path + ": metadata \"" + key + "\" is missing");
    return it->second;
  };
  auto conflict = [&](const std::string& flag, const std::string& file_value, const std::string& given) {
    fail(ErrorCode::invalid_argument, flag + (given.empty() ? "" : " " + given) + " contradicts " + path + ", saved with " + file_value +
                                          " (drop the flag to replay the file as saved)");
  };
  const std::string variant = get(kVariant), causal = get(kCausal), scale_text = get(kScale);
  if (variant != "latent" && variant != "absorb") bad_metadata(path, kVariant, variant);
  if (causal != "true" && causal != "false") bad_metadata(path, kCausal, causal);
  float scale = 0;
  try {
    size_t used = 0;
    scale = std::stof(scale_text, &used);
    if (used != scale_text.size() || !std::isfinite(scale)) bad_metadata(path, kScale, scale_text);
  } catch (const std::logic_error&) {
    bad_metadata(path, kScale, scale_text);
  }
  if (shape.given("--variant") && shape.variant != variant) conflict("--variant", "--variant " + variant, shape.variant);
  if (shape.given("--causal") && !shape.causal == (causal == "true")) conflict("--causal", causal == "true" ? "--causal" : "no --causal", "");
  if (shape.given("--softmax-scale") && shape.softmax_scale != scale)
    conflict("--softmax-scale", "--softmax-scale " + scale_text, float_text(shape.softmax_scale));
  p.variant = variant == "absorb" ? Variant::absorb : Variant::latent;
  p.causal = causal == "true";
  p.softmax_scale = scale;
  try {
    p.d_r = std::stoll(get(kDr));
  } catch (const std::logic_error&) {
    bad_metadata(path, kDr, get(kDr));
  }
  return p;
}

}  // namespace

HostInputs load_inputs(const std::string& path, const ShapeOptions& shape, uint64_t max_bytes) {
  const auto given = shape.given_shape_flags();
  if (!given.empty())
    fail(ErrorCode::invalid_argument, given.front() + " cannot be combined with --inputs: the file's tensors fix the " +
                                          "shape, dtype and values (drop the flag)");
  SafetensorsFile file = read_safetensors_file(path, max_bytes);
  TensorMap& tensors = file.tensors;
  const Problem base = problem_from_metadata(path, file.metadata, shape);
  HostInputs in;
  for (const RunOperand& op : kRunOperands)
    if (read_for_variant(op, base.variant)) host_operand(in, op) = take(tensors, op.name, path);
  // Taken when present: a format without a scale then refuses it by name in validate_args.
  if (auto it = tensors.find("kv_scale"); it != tensors.end()) in.kv_scale = it->second;
  try {
    in.problem = infer_problem_from_tensors(base, in.args());
    validate_problem(in.problem);
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what());
  }
  // No format in the metadata: each format has its own element type, so the kv_cache's dtype
  // names it and a file cannot contradict itself.
  const KvFormat format = in.problem.kv_format;
  const std::vector<int64_t> scale_shape = kv_scale_shape(format, in.problem.d_c, in.problem.d_r);
  if (!scale_shape.empty() && !in.kv_scale.defined())
    fail(ErrorCode::invalid_argument, path + ": missing tensor \"kv_scale\": the " + kv_format_name(format) +
                                          " KV format (kv_cache of " + dtype_name(in.kv_cache.view().dtype) +
                                          ") needs float32 [" + std::to_string(scale_shape[0]) + "]");
  if (auto it = tensors.find(kUnquantized); it != tensors.end() && is_quantized(format)) {
    const Problem& p = in.problem;
    const TensorView& v = it->second.view();
    const bool ok = v.dtype == DType::bf16 && v.rank == 4 && v.shape[0] == p.num_blocks && v.shape[1] == p.page_size &&
                    v.shape[2] == p.h_kv && v.shape[3] == p.d_qk();
    if (!ok)
      fail(ErrorCode::invalid_argument, path + ": " + kUnquantized + ": expected bf16 [" + std::to_string(p.num_blocks) +
                                            ", " + std::to_string(p.page_size) + ", " + std::to_string(p.h_kv) + ", " +
                                            std::to_string(p.d_qk()) + "] (the cache's values before quantization), got " +
                                            v.describe());
    in.kv_unquantized = it->second;
  }
  if (auto it = file.metadata.find(kSq); it != file.metadata.end() && it->second != std::to_string(in.problem.s_q))
    fail(ErrorCode::invalid_argument, path + ": metadata says s_q = " + it->second + " but the query tensor has s_q = " +
                                          std::to_string(in.problem.s_q));
  const Problem& p = in.problem;
  try {
    // Check the file's tensors against each other before allocating outputs: an inconsistent
    // shape must be named, not turned into a huge allocation. The output views point at a
    // placeholder that validation never dereferences.
    alignas(16) static float placeholder[4];
    RunArgs shapes_only = in.args();
    shapes_only.out = TensorView::contiguous(placeholder, p.dtype, {p.batch, p.s_q, p.h_q, p.out_width()});
    shapes_only.lse = TensorView::contiguous(placeholder, DType::fp32, {p.batch, p.h_q, p.s_q});
    validate_args(p, shapes_only, MemorySpace::host);
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what());
  }
  in.out = HostTensor(p.dtype, {p.batch, p.s_q, p.h_q, p.out_width()});
  in.lse = HostTensor(DType::fp32, {p.batch, p.h_q, p.s_q});
  in.poison_outputs();
  try {
    validate_args(p, in.args(), MemorySpace::host);
    validate_indices(p, in.cache_seqlens.as<const int32_t>(), in.block_table.as<const int32_t>(),
                     in.block_table.view().strides[0]);
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what());
  }
  in.seqlens.assign(in.cache_seqlens.as<const int32_t>(), in.cache_seqlens.as<const int32_t>() + p.batch);
  return in;
}

void save_inputs(std::ostream& out, const HostInputs& in) {
  TensorMap t;
  for (const RunOperand& op : kRunOperands)
    if (!is_output_operand(op) && host_operand(in, op).defined()) t.emplace(op.name, host_operand(in, op));
  if (in.kv_unquantized.defined()) t.emplace(kUnquantized, in.kv_unquantized);
  write_safetensors(out, t, problem_metadata(in.problem));
}

void save_outputs(std::ostream& out, const HostInputs& in) {
  TensorMap t;
  for (const RunOperand& op : kRunOperands)
    if (is_output_operand(op)) t.emplace(op.name, host_operand(in, op));
  write_safetensors(out, t, problem_metadata(in.problem));
}

}  // namespace mla::cli
