#include "tensor_files.hpp"

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
}  // namespace

HostInputs load_inputs(const std::string& path, const Problem& base) {
  TensorMap tensors = read_safetensors(path);
  HostInputs in;
  const bool absorb = base.variant == Variant::absorb;
  if (absorb) {
    in.q_nope = take(tensors, "q_nope", path);
    in.q_rope = take(tensors, "q_rope", path);
    in.w_uk = take(tensors, "w_uk", path);
    in.w_uv = take(tensors, "w_uv", path);
  } else {
    in.q = take(tensors, "q", path);
  }
  in.kv_cache = take(tensors, "kv_cache", path);
  in.block_table = take(tensors, "block_table", path);
  in.cache_seqlens = take(tensors, "cache_seqlens", path);
  try {
    in.problem = infer_problem_from_tensors(base, in.args());
    validate_problem(in.problem);
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what());
  }
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

void save_inputs(const std::string& path, const HostInputs& in) {
  TensorMap t;
  auto put = [&](const char* name, const HostTensor& x) {
    if (x.defined()) t.emplace(name, x);
  };
  put("q", in.q);
  put("q_nope", in.q_nope);
  put("q_rope", in.q_rope);
  put("w_uk", in.w_uk);
  put("w_uv", in.w_uv);
  put("kv_cache", in.kv_cache);
  put("block_table", in.block_table);
  put("cache_seqlens", in.cache_seqlens);
  write_safetensors(path, t);
}

void save_outputs(const std::string& path, const HostInputs& in) {
  write_safetensors(path, TensorMap{{"out", in.out}, {"lse", in.lse}});
}

}  // namespace mla::cli
