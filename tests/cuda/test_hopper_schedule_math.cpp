// The Hopper kernel's contiguous split-KV schedule (backends/cuda/hopper/hopper_schedule_math.hpp,
// the arithmetic hopper_scheduler.cu runs on the device) on the host: no GPU, no CUDA toolkit.
// Fresh random batches every run (the seed is printed on failure; MLA_TEST_SEED=<n> replays
// one), plus the edge cases: zero lengths, one long sequence over all pieces, batch > grid,
// lengths out of [0, capacity], the largest batch.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/hopper_schedule_host.hpp"

namespace {

using namespace mla::testing::hopper_schedule;
namespace sched = mla::cuda::hopper::sched;

// Schedules on the host, then checks the contract and that every cta_first slot and every
// entry up to total_splits was written exactly once (nothing outside them).
Schedule schedule_and_check(const std::vector<int32_t>& lens, int32_t capacity, int32_t grid) {
  INFO("batch " << lens.size() << ", capacity " << capacity << ", grid " << grid);
  const HostRun run = schedule_on_host(lens, capacity, grid);
  const Schedule& sc = run.schedule;
  REQUIRE(run.cta_first_writes.size() == static_cast<size_t>(grid) + 1);  // no write out of range
  REQUIRE(run.entry_writes.size() == lens.size() + grid + 1);           // no write past the layout
  std::string writes;
  for (size_t k = 0; k < run.cta_first_writes.size() && writes.empty(); ++k)
    if (run.cta_first_writes[k] != 1)
      writes = "cta_first[" + std::to_string(k) + "] written " + std::to_string(run.cta_first_writes[k]) + " times";
  for (size_t e = 0; e < run.entry_writes.size() && writes.empty(); ++e)
    if (run.entry_writes[e] != (static_cast<int32_t>(e) < sc.total_splits ? 1 : 0))
      writes = "entry " + std::to_string(e) + " (of " + std::to_string(sc.total_splits) + ") written " +
               std::to_string(run.entry_writes[e]) + " times";
  INFO(writes);
  REQUIRE(writes.empty());
  const std::string why = check_schedule(lens, capacity, grid, sc);
  INFO(why);
  REQUIRE(why.empty());
  return sc;
}

int64_t total_cost(const std::vector<int32_t>& lens, int32_t capacity) {
  int64_t t = 0;
  for (int32_t l : lens) t += sched::cost_of(sched::clamp_len(l, capacity), kOverhead);
  return t;
}

}  // namespace

TEST_CASE("cuda hopper schedule math: closed forms", "[cuda][hopper_schedule]") {
  CHECK(sched::blocks_of(0) == 0);
  CHECK(sched::blocks_of(1) == 1);
  CHECK(sched::blocks_of(64) == 1);
  CHECK(sched::blocks_of(65) == 2);
  CHECK(sched::clamp_len(-3, 640) == 0);
  CHECK(sched::clamp_len(700, 640) == 640);
  CHECK(sched::cost_of(130, 5) == 8);
  CHECK(sched::quota(1000, 132, 5) == (1000 + 5 * 132 + 131) / 132);  // = ceil((T + overhead x grid) / grid)
  CHECK(sched::div_floor(int64_t{1} << 40, 3) == (int64_t{1} << 40) / 3);  // the 64-bit path
  CHECK(sched::div_floor(4000000000LL, 7) == 4000000000LL / 7);
  // piece_of is the inverse of boundary on every point, for lines longer and shorter than grid.
  for (int64_t total : {1, 5, 7, 131, 132, 133, 1000, 99991}) {
    for (int32_t grid : {1, 2, 7, 66, 132, 1000}) {
      const sched::Partition part = sched::make_partition(total, grid);
      REQUIRE(part.pieces == std::min<int64_t>(total, grid));
      REQUIRE(part.boundary(0) == 0);
      REQUIRE(part.boundary(part.pieces) == total);
      for (int32_t k = 0; k < part.pieces; ++k) {
        const int64_t b = part.boundary(k), e = part.boundary(k + 1);
        INFO("total " << total << " grid " << grid << " piece " << k << " [" << b << ", " << e << ")");
        REQUIRE(e > b);  // no empty piece on the line
        REQUIRE(e - b <= (total + grid - 1) / grid);
        REQUIRE(part.piece_of(b) == k);
        REQUIRE(part.piece_of(e - 1) == k);
      }
    }
  }
}

TEST_CASE("cuda hopper schedule math: edge cases", "[cuda][hopper_schedule]") {
  const int32_t capacity = 64 * 4096;

  SECTION("one long sequence is split over all pieces, one split per piece") {
    for (int32_t grid : {1, 2, 66, 132, 264}) {
      const Schedule sc = schedule_and_check({128 * 1024 + 17}, capacity, grid);
      CHECK(sc.total_splits == grid);
      for (int32_t k = 0; k <= grid; ++k) CHECK(sc.cta_first[k] == k);
      CHECK(sc.entries[0].slot == (grid > 1 ? 0 : -1));
    }
  }
  SECTION("zero-length sequences get one entry [0, 0)") {
    const std::vector<int32_t> lens{0, 5000, 0, 0, 64, 0, 130000, 0};
    const Schedule sc = schedule_and_check(lens, capacity, 132);
    for (size_t i = 0; i < lens.size(); ++i) {
      if (lens[i] != 0) continue;
      CHECK(sc.seq_splits[i] == 1);
      const Entry& e = sc.entries[sc.seq_offset[i]];
      CHECK(e.begin == 0);
      CHECK(e.end == 0);
      CHECK(e.slot == -1);
    }
  }
  SECTION("all lengths zero") {
    for (int32_t batch : {1, 7, 132, 133, 1000}) {
      const Schedule sc = schedule_and_check(std::vector<int32_t>(batch, 0), capacity, 132);
      CHECK(sc.total_splits == batch);
    }
  }
  SECTION("batch larger than grid") {
    std::vector<int32_t> lens(1000);
    for (size_t i = 0; i < lens.size(); ++i) lens[i] = static_cast<int32_t>(37 * i % 9000);
    schedule_and_check(lens, capacity, 66);
    schedule_and_check(lens, capacity, 1);
  }
  SECTION("lengths are clamped to [0, capacity]") {
    const Schedule sc = schedule_and_check({-5, capacity + 1000, 100, -1}, capacity, 132);
    CHECK(sc.entries[sc.seq_offset[0]].len == 0);
    CHECK(sc.entries[sc.seq_offset[1]].len == capacity);
  }
  SECTION("less work than pieces") {
    schedule_and_check({1}, capacity, 132);  // total cost 6 < grid: one entry, the rest empty
    schedule_and_check({64, 0, 65}, capacity, 132);
  }
  SECTION("equal sequences a little fewer than the pieces stay whole") {
    // b 128 on 132 pieces, b 128 on 66 pieces (2 a piece), b 129: no split, no combine.
    for (auto [b, grid, pieces] : {std::tuple{128, 132, 128}, std::tuple{128, 66, 64}, std::tuple{129, 132, 129}}) {
      INFO("batch " << b << ", grid " << grid);
      const std::vector<int32_t> lens(static_cast<size_t>(b), 8192);
      const Schedule sc = schedule_and_check(lens, capacity, grid);
      CHECK(sc.total_splits == b);
      CHECK(pieces_used(lens, capacity, grid) == pieces);
      CHECK(sc.cta_first[pieces] == b);
    }
    // Too few sequences (b 100 on 132 pieces) or unequal ones: all pieces, sequences split.
    const std::vector<int32_t> few(100, 8192);
    CHECK(pieces_used(few, capacity, 132) == 132);
    CHECK(schedule_and_check(few, capacity, 132).total_splits > 100);
    std::vector<int32_t> uneven(128, 8192);
    uneven[5] = 3000;
    CHECK(pieces_used(uneven, capacity, 132) == 132);
    CHECK(schedule_and_check(uneven, capacity, 132).total_splits > 128);
  }
  SECTION("the largest batch, and every piece busy when the work allows") {
    std::vector<int32_t> lens(8192, 2048);
    const Schedule sc = schedule_and_check(lens, capacity, 132);
    CHECK(sc.total_splits <= 8192 + 131);
  }
}

TEST_CASE("cuda hopper schedule math: random batches", "[cuda][hopper_schedule]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed << " (MLA_TEST_SEED=" << seed << " replays it)");
  std::mt19937_64 rng(seed);
  int64_t max_cost_over_quota = -1000000;
  for (int trial = 0; trial < 3000; ++trial) {
    const Case c = random_case(rng);
    INFO("trial " << trial << ", shape " << c.shape);
    const Schedule sc = schedule_and_check(c.lens, c.capacity, c.grid);
    // How close the heaviest piece comes to the quota (check_schedule requires <= 0).
    const int32_t pieces = pieces_used(c.lens, c.capacity, c.grid);
    const int64_t quota = (total_cost(c.lens, c.capacity) + pieces - 1) / pieces + kOverhead;
    for (int32_t k = 0; k < pieces; ++k) {
      int64_t cost = 0;
      for (int32_t j = sc.cta_first[k]; j < sc.cta_first[k + 1]; ++j)
        cost += kOverhead + (sc.entries[j].end - sc.entries[j].begin + 63) / 64;
      max_cost_over_quota = std::max(max_cost_over_quota, cost - quota);
    }
  }
  CHECK(max_cost_over_quota <= 0);
  CHECK(max_cost_over_quota >= -kOverhead);  // and the bound is not loose: some piece gets near it
}
