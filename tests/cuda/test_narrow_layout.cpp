// The narrow Hopper kernel's index arithmetic (backends/cuda/hopper_narrow/narrow_layout.hpp, the
// functions the kernel itself runs) on the host: no GPU, no CUDA toolkit. For both token sizes
// (576 bytes: fp8_e4m3 and int8; 656: fp8_ds_mla) and both shapes (N = 16 and 32 query rows):
// - S^T = K Q^T: in every k-step, the dim each A element holds (read from the token as
//   compute_st reads it: page_chunk, and for fp8_ds_mla's bf16 rope its chunks c and c + 4, in
//   the wgmma m64nNk16 register layout) is the dim whose query value build_qt put at the B (Q^T)
//   element it multiplies (qt_offset, qt_rope16_offset); every dim 0..575 is met exactly once.
// - st_key is a permutation of each warp's 16 keys (rows g and g + 8); pv_key an involution.
// - Bank groups: S^T's 16-byte loads (and fp8_ds_mla's rope loads) hit 8 different 16-byte bank
//   groups in each quarter-warp phase; V^T's loads are conflict-free with 656-byte tokens and at
//   most 2-way with 576 (W = 1: 16-byte loads, quarter-warp phases; W = 2: 8-byte loads,
//   half-warp phases).
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "cuda/hopper_narrow/narrow_layout.hpp"

namespace {

namespace hn = mla::cuda::hopper_narrow;

constexpr int kLatentDims = 512, kDims = 576;
constexpr int kDsRopeOffset = 528;  // fp8_ds_mla: 512 fp8 bytes, 4 fp32 scales, then the bf16 rope

// Q^T byte offset -> the dim whose query value build_qt writes there (each dim is one 2-byte
// element; dims past 575 of the 8-bit formats' rope box are zeros and map to -1).
template <int TB>
std::map<uint32_t, int> qt_dims(int n, int box_bytes) {
  std::map<uint32_t, int> at;
  auto put = [&](uint32_t off, int dim) {
    INFO("row " << n << " dim " << dim << " offset " << off);
    REQUIRE(at.count(off) == 0);  // no two dims share an element
    REQUIRE(off % 2 == 0);
    REQUIRE(off < static_cast<uint32_t>(2 * hn::kInBoxes * box_bytes));
    at[off] = dim;
  };
  if constexpr (TB == 656) {
    for (int d = 0; d < kLatentDims; d += 2) {
      put(hn::qt_offset(n, d, box_bytes), d);
      put(hn::qt_offset(n, d, box_bytes) + 2, d + 1);
    }
    for (int r = 0; r < kDims - kLatentDims; r += 2) {
      const uint32_t off = hn::qt_rope16_offset(n, r, box_bytes);
      REQUIRE(off / box_bytes == 2 * (hn::kInBoxes - 1));  // box 8
      put(off, kLatentDims + r);
      put(off + 2, kLatentDims + r + 1);
    }
  } else {
    for (int d = 0; d < hn::kInBoxes * hn::kInBoxCols; d += 2) {
      put(hn::qt_offset(n, d, box_bytes), d < kDims ? d : -1);
      put(hn::qt_offset(n, d, box_bytes) + 2, d + 1 < kDims ? d + 1 : -1);
    }
  }
  return at;
}

// Q^T element (K index j of k-step kq, row n): wgmma's B operand, K-major, 128B-swizzled boxes of
// 64 elements (4 k-steps) per row.
uint32_t qt_element(int kq, int j, int n, int box_bytes) {
  const int col = (kq % 4) * 16 + j;
  return static_cast<uint32_t>((kq / 4) * box_bytes) + hn::swz(n, col / 8) + (col % 8) * 2;
}

// The A element of lane c (c = lane % 4) at K index j (register half e): registers 0 and 1 hold
// columns 2c, 2c + 1 (rows g, g + 8), registers 2 and 3 columns 2c + 8, 2c + 9.
struct ASlot {
  int j;   // K index within the k-step
  int hi;  // 0: registers 0/1 (chunk c), 1: registers 2/3 (chunk c + 4)
  int e;
};
std::vector<ASlot> slots_of(int c) {
  std::vector<ASlot> s;
  for (int hi = 0; hi < 2; ++hi)
    for (int e = 0; e < 2; ++e) s.push_back({8 * hi + 2 * c + e, hi, e});
  return s;
}

// For every k-step, K index and query row: the A dim (from the token bytes compute_st reads) equals
// the B dim (where build_qt put the query); returns how often each dim was met.
template <int TB>
std::vector<int> check_st(int n_cols) {
  const int box_bytes = n_cols * 128;
  std::vector<int> met(kDims, 0);
  const int key = 5;  // any key: the dims a lane reads do not depend on its row
  for (int n = 0; n < n_cols; ++n) {
    const std::map<uint32_t, int> at = qt_dims<TB>(n, box_bytes);
    for (int c = 0; c < 4; ++c)
      for (const ASlot& s : slots_of(c)) {
        // Byte-valued boxes: k-step kk of box G takes bytes 2 kk + e of chunks c and c + 4.
        const int byte_boxes = TB == 656 ? hn::kInBoxes - 1 : hn::kInBoxes;
        for (int G = 0; G < byte_boxes; ++G)
          for (int kk = 0; kk < hn::kKStepsPerBox; ++kk) {
            const bool rope8 = G == hn::kInBoxes - 1;  // the 8-bit formats' rope: chunks 4-7 not read
            int a_dim = -1;                            // -1: the register is zero
            if (!(rope8 && s.hi)) {
              const uint32_t chunk = hn::page_chunk<TB>(key, G, c + 4 * s.hi) - static_cast<uint32_t>(key * TB);
              a_dim = static_cast<int>(chunk) + 2 * kk + s.e;
            }
            const int kq = G * hn::kKStepsPerBox + kk;
            const int b_dim = at.at(qt_element(kq, s.j, n, box_bytes));
            INFO("TB " << TB << " N " << n_cols << " row " << n << " c " << c << " box " << G << " kk " << kk
                       << " j " << s.j);
            REQUIRE(a_dim == b_dim);
            if (n == 0 && a_dim >= 0) ++met[a_dim];
          }
        if constexpr (TB == 656) {
          // The bf16 rope: k-step kk takes word kk of rope chunks c and c + 4 (16-byte chunks from
          // byte 528), element e of the word.
          for (int kk = 0; kk < 4; ++kk) {
            const int byte = kDsRopeOffset + 16 * (c + 4 * s.hi) + 4 * kk + 2 * s.e;
            const int a_dim = kLatentDims + (byte - kDsRopeOffset) / 2;
            const int kq = (hn::kInBoxes - 1) * hn::kKStepsPerBox + kk;
            const int b_dim = at.at(qt_element(kq, s.j, n, box_bytes));
            INFO("fp8_ds_mla rope, N " << n_cols << " row " << n << " c " << c << " kk " << kk << " j " << s.j);
            REQUIRE(a_dim == b_dim);
            if (n == 0) ++met[a_dim];
          }
        }
      }
  }
  return met;
}

// Largest number of lanes of one phase that hit the same bank group: `addr` per lane, `bytes`
// per access (16: 8 groups of 16 bytes, phases of 8 lanes; 8: 32 banks of 4 bytes, phases of 16).
int worst_conflict(const std::array<uint32_t, 32>& addr, int bytes) {
  const int lanes_per_phase = 128 / bytes;
  int worst = 0;
  for (int p = 0; p < 32; p += lanes_per_phase) {
    std::map<uint32_t, int> hits;
    for (int lane = p; lane < p + lanes_per_phase; ++lane) {
      if (bytes == 16) {
        ++hits[(addr[lane] / 16) % 8];
      } else {
        ++hits[(addr[lane] / 4) % 32];
        ++hits[(addr[lane] / 4 + 1) % 32];
      }
    }
    for (const auto& [bank, n] : hits) worst = std::max(worst, n);
  }
  return worst;
}

template <int TB>
void check_banks() {
  for (int w = 0; w < 4; ++w) {
    // S^T: per box, the loads of chunk c then c + 4 of keys ka and kb (stages are 1024-aligned).
    for (int G = 0; G < hn::kInBoxes; ++G)
      for (int hi = 0; hi < 2; ++hi)
        for (int second = 0; second < 2; ++second) {
          std::array<uint32_t, 32> addr{};
          for (int lane = 0; lane < 32; ++lane) {
            const int g = lane / 4, c = lane % 4, key = hn::st_key<TB>(w, g) + 8 * second;
            addr[lane] = hn::page_chunk<TB>(key, G, c + 4 * hi);
          }
          INFO("TB " << TB << " warp " << w << " box " << G << " chunk c + " << 4 * hi << " row g + " << 8 * second);
          CHECK(worst_conflict(addr, 16) == 1);
        }
    if constexpr (TB == 656) {
      for (int hi = 0; hi < 2; ++hi) {
        std::array<uint32_t, 32> addr{};
        for (int lane = 0; lane < 32; ++lane) {
          const int g = lane / 4, c = lane % 4, key = hn::st_key<TB>(w, g);
          addr[lane] = static_cast<uint32_t>(key * TB + kDsRopeOffset + 16 * c + 64 * hi);
        }
        INFO("fp8_ds_mla rope, warp " << w << " chunk c + " << 4 * hi);
        CHECK(worst_conflict(addr, 16) == 1);
      }
    }
    // V^T: keys 16 kk + pv_key(2c), + pv_key(2c + 1), and those + 8; the thread's dims at dim0.
    for (int W = 1; W <= 2; ++W)
      for (int h = 0; h < W; ++h)
        for (int kk = 0; kk < 4; ++kk)
          for (int which = 0; which < 4; ++which) {
            std::array<uint32_t, 32> addr{};
            for (int lane = 0; lane < 32; ++lane) {
              const int g = lane / 4, c = lane % 4;
              const int key = 16 * kk + hn::pv_key<TB>(2 * c + (which & 1)) + 8 * (which >> 1);
              const int dim0 = (512 / W) * h + (128 / W) * w + (16 / W) * g;
              addr[lane] = static_cast<uint32_t>(key * TB + dim0);
            }
            INFO("TB " << TB << " W " << W << " warpgroup " << h << " warp " << w << " kk " << kk << " load " << which);
            CHECK(worst_conflict(addr, 16 / W) <= (TB == 656 ? 1 : 2));
          }
  }
}

template <int TB>
void check_orders() {
  for (int w = 0; w < 4; ++w) {
    std::set<int> keys;
    for (int g = 0; g < 8; ++g) {
      keys.insert(hn::st_key<TB>(w, g));
      keys.insert(hn::st_key<TB>(w, g) + 8);
    }
    CHECK(keys.size() == 16);
    CHECK(*keys.begin() == 16 * w);
    CHECK(*keys.rbegin() == 16 * w + 15);
  }
  for (int j = 0; j < 16; ++j) {
    CHECK(hn::pv_key<TB>(j) >= 0);
    CHECK(hn::pv_key<TB>(j) < 16);
    CHECK(hn::pv_key<TB>(hn::pv_key<TB>(j)) == j);
  }
}

}  // namespace

TEST_CASE("narrow kernel layout: S^T's fragments meet the query dims build_qt placed, every dim once",
          "[cuda][narrow]") {
  for (int n_cols : {16, 32}) {
    // Row 0's k-slots (every k-step, all 16 K indices over the four lanes c) meet each dim once.
    for (int count : check_st<576>(n_cols)) CHECK(count == 1);
    for (int count : check_st<656>(n_cols)) CHECK(count == 1);
  }
}

TEST_CASE("narrow kernel layout: S^T and P^T key orders are permutations", "[cuda][narrow]") {
  check_orders<576>();
  check_orders<656>();
}

TEST_CASE("narrow kernel layout: the loads' bank groups", "[cuda][narrow]") {
  check_banks<576>();
  check_banks<656>();
}
