// ISA: AVX2 + FMA (-mavx2 -mfma). Tile: 6×16 float (32-byte vectors).
// Packing: a is 6-major (a[p*6 + i]), b is 16-major (b[p*16 + j]), both 64-byte aligned.
// Blocking: kc=256 keeps a kc×16 panel of B in L1; mc=120 keeps mc×kc of A in L2 (1 MiB on the
// Zen 4 development machine); nc=3072 keeps kc×nc of B in L3.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

static void f32_gemm_6x16_avx2_kernel(int kc, const float* a, const float* b, float* tile) {
  gemm_microkernel<float, 6, 16, 32>(kc, a, b, tile);
}

extern const KernelTable<float> f32_gemm_6x16_avx2 = {f32_gemm_6x16_avx2_kernel, 6, 16, 256, 120, 3072, "avx2"};

}  // namespace deltaprop
