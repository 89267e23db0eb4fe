// ISA: AVX-512F (-mavx512f). Tile: 8×8 double, one 64-byte vector per row, for products at most
// 8 columns wide; the double counterpart of f32_gemm_8x16_avx512.cpp.
// Packing: a is 8-major (a[p*8 + i]), b is 8-major (b[p*8 + j]), both 64-byte aligned.
// Blocking as for the 8×16 tile (f64_gemm_8x16_avx512.cpp); one column panel, so nc is moot.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

static void f64_gemm_8x8_avx512_kernel(int kc, const double* a, std::ptrdiff_t a_rs, std::ptrdiff_t a_cs,
                                       const double* b, std::ptrdiff_t b_rs, const double* c_in, std::ptrdiff_t ldc_in,
                                       double* c_out, std::ptrdiff_t ldc_out) {
  gemm_microkernel<double, 8, 8, 64>(kc, a, a_rs, a_cs, b, b_rs, c_in, ldc_in, c_out, ldc_out);
}

extern const KernelTable<double> f64_gemm_8x8_avx512 = {f64_gemm_8x8_avx512_kernel, 8, 8, 256, 240, 1536, "avx512"};

}  // namespace deltaprop
