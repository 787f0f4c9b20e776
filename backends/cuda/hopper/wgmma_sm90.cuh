// Thin wrappers over the sm_90a warpgroup instructions of the Hopper decode kernel: wgmma
// (m64n64k16 with A and B K-major in shared memory; m64n256k16 with B N-major in shared memory
// and A K-major in shared memory or in registers), its fences, and the shared-memory matrix
// descriptor. Each wgmma is templated on the 16-bit input type (bf16 or fp16, fp32 accumulate):
// PTX spells the type inside the instruction, so each wrapper holds one asm string per type,
// built from the same operand lists below (written out by a small script).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace mla::cuda::hopper {

// Shared-memory matrix descriptor (PTX ISA "matrix descriptor format"): start address,
// leading- and stride-dimension byte offsets (all >> 4), swizzle mode 1 = 128-byte swizzle.
// K-major 128B-swizzled tiles: LBO unused, SBO = 1024 (the next 8-row group).
// N-major (transposed) 128B-swizzled tiles: LBO = bytes to the next 64-element block along N,
// SBO = bytes to the next group of 8 rows along K.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (static_cast<uint64_t>(lbo >> 4) << 16) |
         (static_cast<uint64_t>(sbo >> 4) << 32) | (uint64_t{1} << 62);
}

// The descriptor of the tile `bytes` further on in shared memory: only the start-address field
// (bits 0-13, address >> 4) moves, and shared addresses stay below 256 KiB, so a 32-bit add on
// the low word is exact. Built once per base, this replaces the masks and shifts of smem_desc at
// every k-step (8.4 M of the 49 M instructions of a b 64, h_q 128, 4k decode).
__device__ __forceinline__ uint64_t desc_plus(uint64_t desc, uint32_t bytes) {
  return (desc & 0xFFFFFFFF00000000ull) | static_cast<uint32_t>(static_cast<uint32_t>(desc) + (bytes >> 4));
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
// Waits until at most N committed groups of this warpgroup are still in flight.
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }

// Ties accumulator registers to a point in program order (after a wait, before reuse), so the
// compiler cannot move their reads or writes across the asynchronous MMA.
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// The same for A fragments in registers: keeps them (and their registers) alive until the
// wgmma that reads them has been waited for.
template <int N>
__device__ __forceinline__ void fence_regs(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// The accumulator operands (d[0..N-1] read-write) and their placeholders %0..%N-1.
#define MLA_WGMMA_D32 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define MLA_WGMMA_D128 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
#define MLA_WGMMA_R32 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define MLA_WGMMA_R128 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"

// D[64x64] (+)= A[64x16] B[16x64]; A, B K-major in shared memory. scale_d = 0 overwrites D.
template <typename T>
__device__ __forceinline__ void wgmma_m64n64k16_ss(float (&d)[32], uint64_t desc_a, uint64_t desc_b, int scale_d) {
#define MLA_WGMMA_BODY(TY)                                                                                         \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                     \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {" MLA_WGMMA_R32 "}, %32, %33, p, 1, 1, 0, 0;\n}\n" \
               : MLA_WGMMA_D32                                                                                     \
               : "l"(desc_a), "l"(desc_b), "r"(scale_d))
  if constexpr (std::is_same_v<T, __half>) MLA_WGMMA_BODY("f16");
  else MLA_WGMMA_BODY("bf16");
#undef MLA_WGMMA_BODY
}

// D[64x256] += A[64x16] B[16x256]; A from registers (the 16-bit fragment layout of the m64nNk16
// f32 accumulator, 4 x 32 bits per thread), B N-major ("transposed") in shared memory.
template <typename T>
__device__ __forceinline__ void wgmma_m64n256k16_rs_tb(float (&d)[128], const uint32_t (&a)[4], uint64_t desc_b) {
#define MLA_WGMMA_BODY(TY)                                                                                          \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"                                                     \
               "wgmma.mma_async.sync.aligned.m64n256k16.f32." TY "." TY " {" MLA_WGMMA_R128 "}, {%128, %129, %130, %131}, %132, p, 1, 1, 1;\n}\n" \
               : MLA_WGMMA_D128                                                                                     \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1))
  if constexpr (std::is_same_v<T, __half>) MLA_WGMMA_BODY("f16");
  else MLA_WGMMA_BODY("bf16");
#undef MLA_WGMMA_BODY
}

// D[64x256] += A[64x16] B[16x256]; A K-major and B N-major ("transposed") in shared memory.
template <typename T>
__device__ __forceinline__ void wgmma_m64n256k16_ss_tb(float (&d)[128], uint64_t desc_a, uint64_t desc_b) {
#define MLA_WGMMA_BODY(TY)                                                                                          \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                                     \
               "wgmma.mma_async.sync.aligned.m64n256k16.f32." TY "." TY " {" MLA_WGMMA_R128 "}, %128, %129, p, 1, 1, 0, 1;\n}\n" \
               : MLA_WGMMA_D128                                                                                     \
               : "l"(desc_a), "l"(desc_b), "r"(1))
  if constexpr (std::is_same_v<T, __half>) MLA_WGMMA_BODY("f16");
  else MLA_WGMMA_BODY("bf16");
#undef MLA_WGMMA_BODY
}


// D[64x16] (+)= A[64x16] B[16x16]; A from registers (the 16-bit fragment layout), B K-major in
// shared memory (128B-swizzled rows of 64 elements). The narrow kernel's S^T = K Q^T and
// O^T = V^T P^T (hopper_narrow/), whose A fragments are dequantized in registers. scale_d = 0
// overwrites D.
template <typename T>
__device__ __forceinline__ void wgmma_m64n16k16_rs(float (&d)[8], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
#define MLA_WGMMA_BODY(TY)                                                                                          \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %13, 0;\n"                                                       \
               "wgmma.mma_async.sync.aligned.m64n16k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, %12, p, 1, 1, 0;\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])        \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))
  if constexpr (std::is_same_v<T, __half>) MLA_WGMMA_BODY("f16");
  else MLA_WGMMA_BODY("bf16");
#undef MLA_WGMMA_BODY
}

// D[64x32] (+)= A[64x16] B[16x32], as wgmma_m64n16k16_rs: the narrow kernel's two-warpgroup
// shape (32 query rows per CTA).
template <typename T>
__device__ __forceinline__ void wgmma_m64n32k16_rs(float (&d)[16], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
#define MLA_WGMMA_BODY(TY)                                                                                          \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"                                                       \
               "wgmma.mma_async.sync.aligned.m64n32k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %20, p, 1, 1, 0;\n}\n" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),       \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])  \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))
  if constexpr (std::is_same_v<T, __half>) MLA_WGMMA_BODY("f16");
  else MLA_WGMMA_BODY("bf16");
#undef MLA_WGMMA_BODY
}

// The m64nNk16 register-A product for N = 16 or 32.
template <typename T, int N>
__device__ __forceinline__ void wgmma_m64nk16_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
  static_assert(N == 16 || N == 32, "the narrow kernel's N is 16 or 32");
  if constexpr (N == 16) wgmma_m64n16k16_rs<T>(d, a, desc_b, scale_d);
  else wgmma_m64n32k16_rs<T>(d, a, desc_b, scale_d);
}

#undef MLA_WGMMA_D32
#undef MLA_WGMMA_D128
#undef MLA_WGMMA_R32
#undef MLA_WGMMA_R128

}  // namespace mla::cuda::hopper
