// ISA: AVX-512F (-mavx512f). Tile: 8×16 float, one 64-byte vector per row, for products at most
// 16 columns wide (the 10-unit output layers): 8 accumulators, 1 B vector and a broadcast. The
// 32-column tile would leave half its lanes empty there, and the AVX2 6×16 tile used before
// runs 8-lane vectors: 128×128 · 128×10 took 6.6 µs against its 8.2 (deltaprop.ops, 1 thread).
// Packing: a is 8-major (a[p*8 + i]), b is 16-major (b[p*16 + j]), both 64-byte aligned.
// Blocking as for the 8×32 tile (f32_gemm_8x32_avx512.cpp); one column panel, so nc is moot.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

extern const KernelTable<float> f32_gemm_8x16_avx512 =
    kernel_table<float, 8, 16, 64>(256, 240, 3072, "avx512");

}  // namespace deltaprop
