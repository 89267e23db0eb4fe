// ISA: AVX2 + FMA (-mavx2 -mfma). Tile: 6×8 double (32-byte vectors).
// Packing: a is 6-major (a[p*6 + i]), b is 8-major (b[p*8 + j]), both 64-byte aligned.
// Blocking: kc=256 keeps a kc×8 panel of B in L1; mc=120 keeps mc×kc of A in L2 (1 MiB on the
// Zen 4 development machine); nc=1536 keeps kc×nc of B in L3.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

static void f64_gemm_6x8_avx2_kernel(int kc, const double* a, const double* b, double* tile) {
  gemm_microkernel<double, 6, 8, 32>(kc, a, b, tile);
}

extern const KernelTable<double> f64_gemm_6x8_avx2 = {f64_gemm_6x8_avx2_kernel, 6, 8, 256, 120, 1536, "avx2"};

}  // namespace deltaprop
