// Found while writing the bad-input table: Plan::run and Plan::schedule once validated tensors
// against the memory space the tensors claimed (args.out.space) instead of the device's, so
// tensors that all claimed device memory passed on a host backend, which would then have
// dereferenced device pointers. Plans now carry their device's memory space.
#include <catch2/catch.hpp>

#include "robustness/robustness_table.hpp"

TEST_CASE("tensors in the wrong memory space for the device are refused", "[robustness]") {
  using mla::robustness::ApiSetup;
  ApiSetup s = ApiSetup::make();
  for (mla::TensorView* v : {&s.args.q, &s.args.kv_cache, &s.args.block_table, &s.args.cache_seqlens, &s.args.out,
                             &s.args.lse})
    v->space = mla::MemorySpace::device;
  CHECK_THROWS_AS(s.run(), mla::Error);
  CHECK_THROWS_AS(s.plan->schedule(s.args.cache_seqlens), mla::Error);
}
