// ISA: AVX2 + FMA (-mavx2 -mfma). Tile: 6×16 float (32-byte vectors).
// Packing: a is 6-major (a[p*6 + i]), b is 16-major (b[p*16 + j]), both 64-byte aligned.
// Blocking: a kc×16 panel of B streams from L1/L2, mc×kc of A stays in L2 (1 MiB on the
// Zen 4 development machine), kc×nc of B in L3. kc=256, mc=240 won a sweep of kc 128–384 and
// mc 72–240 on the training shapes (single thread, vs OpenBLAS: 89–106%); nc=3072.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

static void f32_gemm_6x16_avx2_kernel(int kc, const float* a, std::ptrdiff_t a_rs, std::ptrdiff_t a_cs,
                                      const float* b, std::ptrdiff_t b_rs, const float* c_in, std::ptrdiff_t ldc_in,
                                      float* c_out, std::ptrdiff_t ldc_out) {
  gemm_microkernel<float, 6, 16, 32>(kc, a, a_rs, a_cs, b, b_rs, c_in, ldc_in, c_out, ldc_out);
}

extern const KernelTable<float> f32_gemm_6x16_avx2 = {f32_gemm_6x16_avx2_kernel, 6, 16, 256, 240, 3072, "avx2"};

}  // namespace deltaprop
