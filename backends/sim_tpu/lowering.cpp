#include "lowering.hpp"

#include <algorithm>
#include <functional>
#include <initializer_list>

#include "mla/dtype.hpp"
#include "mla/error.hpp"

namespace mla::sim_tpu {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A buffer ring: slot i remembers the commands that last used it, so whoever refills the slot
// waits for them. Two slots = double buffering, one slot = every stage waits for the last.
struct Ring {
  std::vector<std::vector<int32_t>> users;
  size_t next = 0;
  explicit Ring(size_t slots = 1) : users(slots) {}
  size_t take() {
    size_t s = next;
    next = (next + 1) % users.size();
    return s;
  }
};

class ChipLowering {
 public:
  ChipLowering(const Problem& p, const SimConfig& c, const StepWork& step, const ChipWork& chip)
      : p_(p), c_(c), t_(step.tiling), chip_(chip), slot_store_(static_cast<size_t>(step.partial_slots), -1) {
    esize_ = static_cast<double>(dtype_size(p.dtype));
    kv_token_bytes_ = static_cast<double>(kv_token_bytes(p.kv_format, p.d_c, p.d_r));
    const CoreModel& core = c.chip.core;
    const double tflops = p.dtype == DType::bf16 ? core.bdc_bf16_tflops
                          : p.dtype == DType::fp16 ? core.bdc_fp16_tflops
                                                   : core.bdc_fp32_tflops;
    flops_per_ns_ = tflops * 1e3;
    vector_ops_per_ns_ = core.vector_gops;
    dequant_values_per_ns_ = core.dequant_values_per_ns;
    scale_kind_ = p.kv().scale;
    bdc_overhead_ns_ = core.bdc_command_overhead_cycles / c.chip.clock_ghz;
    buffers_ = t_.double_buffer ? 2 : 1;

    prog_.ddr_bytes_per_ns = c.chip.ddr.bandwidth_gbps;  // GB/s == bytes/ns
    prog_.l2_bytes_per_ns = c.chip.l2.bandwidth_gbps;
    for (int64_t e = 0; e < c.chip.sdma.engines; ++e)
      prog_.lanes.push_back({EngineKind::sdma, -1, static_cast<int32_t>(e), c.chip.sdma.bandwidth_gbps});
    cores_.resize(static_cast<size_t>(c.chip.cores));
    for (int64_t k = 0; k < c.chip.cores; ++k) {
      CoreState& s = cores_[static_cast<size_t>(k)];
      s.gdma = static_cast<int32_t>(prog_.lanes.size());
      prog_.lanes.push_back({EngineKind::gdma, static_cast<int32_t>(k), 0, c.chip.gdma.bandwidth_gbps});
      s.bdc = static_cast<int32_t>(prog_.lanes.size());
      prog_.lanes.push_back({EngineKind::bdc, static_cast<int32_t>(k), 0, 0});
      s.kv_tiles = s.queries = s.outputs = s.weights = Ring(static_cast<size_t>(buffers_));
      s.partials = Ring(2);
    }
    l2_rings_.assign(step.strategy == Strategy::heads ? 1 : cores_.size(), Ring(static_cast<size_t>(buffers_)));
    item_chunks_done_.assign(chip.items.size(), 0);
  }

  ChipProgram run(Strategy strategy) {
    switch (strategy) {
      case Strategy::heads: lower_heads(); break;
      case Strategy::batch: lower_batch(); break;
      case Strategy::sequence: lower_sequence(); break;
    }
    for (CoreState& s : cores_) flush_store(s);
    return std::move(prog_);
  }

 private:
  struct PendingStore {
    int32_t finalize = -1;
    size_t out_slot = 0;
    int32_t seq = -1;
    int32_t partial_slot = -1;
    double bytes = 0;
  };
  struct CoreState {
    int32_t gdma = 0, bdc = 0;
    Ring kv_tiles, queries, outputs, weights, partials;
    int32_t weights_loaded = -1;  // resident weights: the one load every projection waits for
    int32_t query_ready = -1;     // what the current item's tiles wait for
    size_t query_slot = 0;
    bool has_pending = false;
    PendingStore pending;
  };
  // One SDMA gather (or none, for an empty item) and the items that read it.
  struct Chunk {
    int32_t sdma = -1;
    size_t ring = 0, slot = 0;
    int64_t begin = 0, end = 0;
  };

  int32_t emit(int32_t lane, Op op, MemoryKind src, MemoryKind dst, int32_t seq, double bytes, double fixed_ns,
               double flops, std::initializer_list<int32_t> deps, const std::vector<int32_t>* more = nullptr) {
    Command cmd;
    cmd.lane = lane;
    cmd.op = op;
    cmd.src = src;
    cmd.dst = dst;
    cmd.seq = seq;
    cmd.bytes = bytes;
    cmd.fixed_ns = fixed_ns;
    cmd.flops = flops;
    cmd.dep_begin = static_cast<int32_t>(prog_.deps.size());
    for (int32_t d : deps)
      if (d >= 0) prog_.deps.push_back(d);
    if (more)
      for (int32_t d : *more)
        if (d >= 0) prog_.deps.push_back(d);
    cmd.dep_end = static_cast<int32_t>(prog_.deps.size());
    prog_.commands.push_back(cmd);
    return static_cast<int32_t>(prog_.commands.size() - 1);
  }

  double dma_fixed_ns(const DmaEngine& engine, double descriptors, MemoryKind a, MemoryKind b) const {
    double ns = engine.command_overhead_ns * descriptors;
    if (a == MemoryKind::ddr || b == MemoryKind::ddr) ns += c_.chip.ddr.latency_ns;
    if (a == MemoryKind::l2 || b == MemoryKind::l2) ns += c_.chip.l2.latency_ns;
    return ns;
  }
  int32_t gdma(CoreState& s, Op op, MemoryKind src, MemoryKind dst, int32_t seq, double bytes,
               std::initializer_list<int32_t> deps, const std::vector<int32_t>* more = nullptr) {
    return emit(s.gdma, op, src, dst, seq, bytes, dma_fixed_ns(c_.chip.gdma, 1, src, dst), 0, deps, more);
  }
  // BDC time: padded matrix FLOPs at the matrix rate, then the vector work, plus issue overhead.
  int32_t bdc(CoreState& s, Op op, int32_t seq, double flops, double padded_flops, double vector_ops,
              std::initializer_list<int32_t> deps, const std::vector<int32_t>* more = nullptr) {
    const double ns = padded_flops / flops_per_ns_ + vector_ops / vector_ops_per_ns_ + bdc_overhead_ns_;
    return emit(s.bdc, op, MemoryKind::lmem, MemoryKind::lmem, seq, 0, ns, flops, deps, more);
  }

  int64_t padded_rows(const WorkItem& w) const {
    // Heads of different KV heads are separate matmuls; each pads its rows to the granularity.
    const int64_t group = p_.heads_per_kv(), gran = c_.chip.core.bdc_row_granularity;
    int64_t rows = 0;
    for (int64_t h = w.head_begin; h < w.head_begin + w.head_count;) {
      const int64_t next = std::min<int64_t>(w.head_begin + w.head_count, (h / group + 1) * group);
      rows += ceil_div((next - h) * p_.s_q, gran) * gran;
      h = next;
    }
    return rows;
  }
  int64_t kv_heads(const WorkItem& w) const {
    const int64_t group = p_.heads_per_kv();
    return (w.head_begin + w.head_count - 1) / group - w.head_begin / group + 1;
  }

  // fp8_ds_mla: the BDC's vector unit turns a tile's fp8 values (times their per-token group
  // scales) and rope into a compute-dtype staging tile, which the matmuls read; the tile's
  // LMEM slot is free again once this is done. One staging tile suffices: the BDC runs in order.
  int32_t dequant(CoreState& s, int32_t seq, double values, int32_t after) {
    const double ns = values / dequant_values_per_ns_ + bdc_overhead_ns_;
    return emit(s.bdc, Op::dequant_tile, MemoryKind::lmem, MemoryKind::lmem, seq, 0, ns, 0, {after});
  }

  // Absorb projections: resident weights wait for their one load; streamed weights come one head
  // at a time through the weight ring, each load waiting for the projection that used its slot.
  int32_t projection(CoreState& s, Op op, int32_t seq, int64_t heads, double head_weight_bytes, double head_flops,
                     int32_t after) {
    if (t_.weights_resident)
      return bdc(s, op, seq, heads * head_flops, heads * head_flops, 0, {after, s.weights_loaded});
    int32_t last = after;
    for (int64_t h = 0; h < heads; ++h) {
      const size_t slot = s.weights.take();
      int32_t load = gdma(s, Op::load_weights, MemoryKind::ddr, MemoryKind::lmem, seq, head_weight_bytes, {},
                          &s.weights.users[slot]);
      last = bdc(s, op, seq, head_flops, head_flops, 0, {load, after});
      s.weights.users[slot] = {last};
    }
    return last;
  }

  void start_item(CoreState& s, const WorkItem& w) {
    const bool absorb = p_.variant == Variant::absorb;
    const int64_t rows = w.head_count * p_.s_q;
    if (absorb && t_.weights_resident && s.weights_loaded < 0) {
      const double bytes = static_cast<double>(w.head_count * (p_.d_nope * p_.d_c + p_.d_c * p_.d_vh)) * esize_;
      s.weights_loaded = gdma(s, Op::load_weights, MemoryKind::ddr, MemoryKind::lmem, w.seq, bytes, {});
    }
    s.query_slot = s.queries.take();
    const double q_bytes = static_cast<double>(rows * (absorb ? p_.d_nope + p_.d_r : p_.d_qk())) * esize_;
    int32_t load = gdma(s, Op::load_query, MemoryKind::ddr, MemoryKind::lmem, w.seq, q_bytes, {},
                        &s.queries.users[s.query_slot]);
    s.query_ready = load;
    if (absorb)
      s.query_ready = projection(s, Op::project_query, w.seq, w.head_count,
                                 static_cast<double>(p_.d_nope * p_.d_c) * esize_,
                                 2.0 * static_cast<double>(p_.s_q * p_.d_nope * p_.d_c), load);
  }

  void attend_chunk(CoreState& s, const WorkItem& w, const Chunk& chunk, std::vector<int32_t>& ring_readers) {
    const int64_t tile = t_.kv_tile_tokens;
    const int64_t rows = w.head_count * p_.s_q, padded = padded_rows(w);
    const double width = static_cast<double>(p_.d_qk() + p_.d_v());
    int32_t last_load = -1;
    for (int64_t n0 = chunk.begin; n0 < chunk.end; n0 += tile) {
      const double n = static_cast<double>(std::min(tile, chunk.end - n0));
      const size_t slot = s.kv_tiles.take();
      last_load = gdma(s, Op::load_kv_tile, MemoryKind::l2, MemoryKind::lmem, w.seq,
                       n * static_cast<double>(kv_heads(w)) * kv_token_bytes_, {chunk.sdma},
                       &s.kv_tiles.users[slot]);
      flush_store(s);  // the previous item's output leaves once this item's first load is queued
      int32_t tile_ready = last_load;
      if (scale_kind_ == KvScaleKind::in_token) {
        tile_ready = dequant(s, w.seq, n * static_cast<double>(kv_heads(w) * p_.d_qk()), last_load);
        s.kv_tiles.users[slot] = {tile_ready};
      }
      double vector_ops = static_cast<double>(rows) * (n * kVectorOpsPerScore + p_.d_v() * kVectorOpsPerAccum);
      // A per-channel kv_scale is folded into the item's query rows once, before its first tile.
      if (scale_kind_ == KvScaleKind::per_channel && n0 == w.begin) vector_ops += static_cast<double>(rows * p_.d_qk());
      int32_t attend = bdc(s, Op::attend_tile, w.seq, 2.0 * rows * n * width, 2.0 * padded * n * width, vector_ops,
                           {tile_ready, s.query_ready});
      if (scale_kind_ != KvScaleKind::in_token) s.kv_tiles.users[slot] = {attend};
    }
    if (last_load >= 0) ring_readers.push_back(last_load);
  }

  // Normalises (and projects, for final outputs of absorb) and queues the store.
  void end_item(CoreState& s, int32_t seq, int64_t heads, int32_t partial_slot) {
    const bool absorb = p_.variant == Variant::absorb, partial = partial_slot >= 0;
    const int64_t rows = heads * p_.s_q;
    flush_store(s);
    const size_t out_slot = s.outputs.take();
    // A per-channel kv_scale is folded into the final output (a per-tensor one costs nothing:
    // it joins the softmax scale and the 1 / sum here). Partials stay unscaled until merged.
    const int64_t fold = scale_kind_ == KvScaleKind::per_channel && !partial ? rows * p_.d_v() : 0;
    int32_t fin = bdc(s, Op::finalize, seq, 0, 0, static_cast<double>(rows * p_.d_v() + fold), {s.query_ready},
                      &s.outputs.users[out_slot]);
    if (absorb && !partial)
      fin = projection(s, Op::finalize, seq, heads, static_cast<double>(p_.d_c * p_.d_vh) * esize_,
                       2.0 * static_cast<double>(p_.s_q * p_.d_c * p_.d_vh), fin);
    s.queries.users[s.query_slot] = {fin};
    s.has_pending = true;
    s.pending.finalize = fin;
    s.pending.out_slot = out_slot;
    s.pending.seq = seq;
    s.pending.partial_slot = partial_slot;
    s.pending.bytes = partial ? static_cast<double>(rows * (p_.d_v() + 1) * 4)
                              : static_cast<double>(rows) * (static_cast<double>(p_.out_width()) * esize_ + 4);
  }

  void flush_store(CoreState& s) {
    if (!s.has_pending) return;
    s.has_pending = false;
    const PendingStore& ps = s.pending;
    const bool partial = ps.partial_slot >= 0;
    int32_t store = gdma(s, partial ? Op::store_partial : Op::store_output, MemoryKind::lmem,
                         partial ? MemoryKind::l2 : MemoryKind::ddr, ps.seq, ps.bytes, {ps.finalize});
    s.outputs.users[ps.out_slot] = {store};
    if (partial) slot_store_[static_cast<size_t>(ps.partial_slot)] = store;
  }

  void combine(const CombineItem& m) {
    CoreState& s = cores_[static_cast<size_t>(m.core)];
    const int64_t rows = m.head_count * p_.s_q;
    const double bytes = static_cast<double>(rows * (p_.d_v() + 1) * 4);
    // Every slice's partial store must be queued before the loads that wait for it.
    for (CoreState& other : cores_) flush_store(other);
    for (int32_t k = 0; k < m.slots; ++k) {
      if (slot_store_[static_cast<size_t>(m.first_slot + k)] < 0)
        fail(ErrorCode::internal, "sim_tpu lowering: partial " + std::to_string(m.first_slot + k) + " of sequence " +
                                      std::to_string(m.seq) + " is merged before it is stored");
      const size_t slot = s.partials.take();
      int32_t load = gdma(s, Op::load_partial, MemoryKind::l2, MemoryKind::lmem, m.seq, bytes,
                          {slot_store_[static_cast<size_t>(m.first_slot + k)]}, &s.partials.users[slot]);
      int32_t merge = bdc(s, Op::merge_partial, m.seq, 0, 0, static_cast<double>(rows * (p_.d_v() + 2)) * kVectorOpsPerMerge,
                          {load});
      s.partials.users[slot] = {merge};
    }
    s.query_slot = s.queries.take();
    s.query_ready = -1;
    end_item(s, m.seq, m.head_count, -1);
  }

  // SDMA gathers keys [begin, end) of `seq` into the next buffer of `ring`, once the readers of
  // what that buffer held before are done.
  Chunk gather(int32_t seq, int64_t begin, int64_t end, size_t ring) {
    Chunk ch;
    ch.begin = begin;
    ch.end = end;
    ch.ring = ring;
    if (end <= begin) return ch;
    Ring& r = l2_rings_[ring];
    ch.slot = r.take();
    const int64_t ps = p_.page_size;
    const double pages = static_cast<double>((end - 1) / ps - begin / ps + 1);
    const double bytes = static_cast<double>(end - begin) * static_cast<double>(p_.h_kv) * kv_token_bytes_;
    const int32_t lane = static_cast<int32_t>(sdma_issued_++ % c_.chip.sdma.engines);
    ch.sdma = emit(lane, Op::gather_kv, MemoryKind::ddr, MemoryKind::l2, seq, bytes,
                   dma_fixed_ns(c_.chip.sdma, pages, MemoryKind::ddr, MemoryKind::l2), 0, {}, &r.users[ch.slot]);
    r.users[ch.slot].clear();
    return ch;
  }

  // Item `index` consumes chunk number `j` of its range: starts the item on the first chunk,
  // finishes it on the last.
  void consume(size_t index, const Chunk& chunk, bool last) {
    const WorkItem& w = chip_.items[index];
    CoreState& s = cores_[static_cast<size_t>(w.core)];
    if (item_chunks_done_[index]++ == 0) start_item(s, w);
    if (chunk.end > chunk.begin) attend_chunk(s, w, chunk, l2_rings_[chunk.ring].users[chunk.slot]);
    if (last) end_item(s, w.seq, w.head_count, w.partial_slot);
  }

  int64_t chunks_of(const WorkItem& w) const {
    return std::max<int64_t>(1, ceil_div(w.end - w.begin, t_.l2_chunk_tokens));
  }
  std::pair<int64_t, int64_t> chunk_range(const WorkItem& w, int64_t j) const {
    const int64_t b = w.begin + j * t_.l2_chunk_tokens;
    return {b, std::min<int64_t>(w.end, b + t_.l2_chunk_tokens)};
  }

  // Heads: one gather per chunk, read by every core (each with its own heads).
  void lower_heads() {
    size_t i = 0;
    while (i < chip_.items.size()) {
      size_t j = i;
      while (j < chip_.items.size() && chip_.items[j].seq == chip_.items[i].seq) ++j;
      const WorkItem& first = chip_.items[i];
      const int64_t chunks = chunks_of(first);
      for (int64_t k = 0; k < chunks; ++k) {
        auto [b, e] = chunk_range(first, k);
        Chunk ch = gather(first.seq, b, e, 0);
        for (size_t x = i; x < j; ++x) consume(x, ch, k + 1 == chunks);
      }
      i = j;
    }
  }

  // Private rings: each core reads only its own chunks. SDMA serves the cores round-robin, one
  // chunk each per round, so no core waits for another's whole sequence.
  void round_robin(const std::vector<std::vector<size_t>>& per_core, const std::function<void()>& after_first_round) {
    std::vector<std::vector<std::pair<size_t, int64_t>>> tasks(per_core.size());
    size_t rounds = 0;
    for (size_t k = 0; k < per_core.size(); ++k) {
      for (size_t index : per_core[k]) {
        const int64_t chunks = chunks_of(chip_.items[index]);
        for (int64_t j = 0; j < chunks; ++j) tasks[k].push_back({index, j});
      }
      rounds = std::max(rounds, tasks[k].size());
    }
    for (size_t r = 0; r < rounds; ++r) {
      for (size_t k = 0; k < tasks.size(); ++k) {
        if (r >= tasks[k].size()) continue;
        auto [index, j] = tasks[k][r];
        const WorkItem& w = chip_.items[index];
        auto [b, e] = chunk_range(w, j);
        Chunk ch = gather(w.seq, b, e, static_cast<size_t>(w.core));
        consume(index, ch, j + 1 == chunks_of(w));
      }
      if (r == 0 && after_first_round) after_first_round();
    }
  }

  void lower_batch() {
    std::vector<std::vector<size_t>> per_core(cores_.size());
    for (size_t i = 0; i < chip_.items.size(); ++i) per_core[static_cast<size_t>(chip_.items[i].core)].push_back(i);
    round_robin(per_core, nullptr);
  }

  // Sequence by sequence: its slices round-robin over the cores; the combine of a sequence is
  // queued once the next sequence's first chunks are, so it overlaps the next sequence's loads.
  void lower_sequence() {
    const CombineItem* waiting = nullptr;
    size_t next_combine = 0, i = 0;
    while (i < chip_.items.size()) {
      size_t j = i;
      while (j < chip_.items.size() && chip_.items[j].seq == chip_.items[i].seq) ++j;
      std::vector<std::vector<size_t>> per_core(cores_.size());
      for (size_t x = i; x < j; ++x) per_core[static_cast<size_t>(chip_.items[x].core)].push_back(x);
      const CombineItem* mine = nullptr;
      if (next_combine < chip_.combines.size() && chip_.combines[next_combine].seq == chip_.items[i].seq)
        mine = &chip_.combines[next_combine++];
      round_robin(per_core, [&] {
        if (waiting) combine(*waiting);
        waiting = nullptr;
      });
      if (mine) waiting = mine;
      i = j;
    }
    if (waiting) combine(*waiting);
  }

  const Problem& p_;
  const SimConfig& c_;
  const Tiling& t_;
  const ChipWork& chip_;
  ChipProgram prog_;
  std::vector<CoreState> cores_;
  std::vector<Ring> l2_rings_;
  std::vector<int32_t> item_chunks_done_;
  std::vector<int32_t> slot_store_;
  double esize_ = 2, kv_token_bytes_ = 1152, flops_per_ns_ = 1, vector_ops_per_ns_ = 1, bdc_overhead_ns_ = 0;
  double dequant_values_per_ns_ = 1;
  KvScaleKind scale_kind_ = KvScaleKind::none;
  int64_t buffers_ = 2;
  int64_t sdma_issued_ = 0;
};

}  // namespace

ChipProgram lower_chip(const Problem& p, const SimConfig& c, const StepWork& step, const ChipWork& chip) {
  return ChipLowering(p, c, step, chip).run(step.strategy);
}

}  // namespace mla::sim_tpu
