#include "program.hpp"

namespace mla::sim_tpu {

const char* engine_name(EngineKind kind) {
  switch (kind) {
    case EngineKind::sdma: return "SDMA";
    case EngineKind::gdma: return "GDMA";
    case EngineKind::bdc: return "BDC";
  }
  return "?";
}

const char* memory_name(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::none: return "none";
    case MemoryKind::ddr: return "ddr";
    case MemoryKind::l2: return "l2";
    case MemoryKind::lmem: return "lmem";
  }
  return "?";
}

const char* op_name(Op op) {
  switch (op) {
    case Op::gather_kv: return "gather_kv";
    case Op::load_kv_tile: return "load_kv_tile";
    case Op::load_query: return "load_query";
    case Op::load_weights: return "load_weights";
    case Op::project_query: return "project_query";
    case Op::dequant_tile: return "dequant_tile";
    case Op::attend_tile: return "attend_tile";
    case Op::finalize: return "finalize";
    case Op::store_output: return "store_output";
    case Op::store_partial: return "store_partial";
    case Op::load_partial: return "load_partial";
    case Op::merge_partial: return "merge_partial";
  }
  return "?";
}

std::string Lane::name() const {
  if (core < 0) return std::string(engine_name(kind)) + " " + std::to_string(index);
  return "core " + std::to_string(core) + " " + engine_name(kind);
}

}  // namespace mla::sim_tpu
