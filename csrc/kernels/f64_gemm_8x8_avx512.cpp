// ISA: AVX-512F (-mavx512f). Tile: 8×8 double, one 64-byte vector per row, for products at most
// 8 columns wide; the double counterpart of f32_gemm_8x16_avx512.cpp.
// Packing: a is 8-major (a[p*8 + i]), b is 8-major (b[p*8 + j]), both 64-byte aligned.
// Blocking as for the 8×16 tile (f64_gemm_8x16_avx512.cpp); one column panel, so nc is moot.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

extern const KernelTable<double> f64_gemm_8x8_avx512 =
    kernel_table<double, 8, 8, 64>(256, 240, 1536, "avx512");

}  // namespace deltaprop
