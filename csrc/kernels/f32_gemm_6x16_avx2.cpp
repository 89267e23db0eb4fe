// ISA: AVX2 + FMA (-mavx2 -mfma). Tile: 6×16 float (32-byte vectors).
// Packing: a is 6-major (a[p*6 + i]), b is 16-major (b[p*16 + j]), both 64-byte aligned.
// Blocking: a kc×16 panel of B streams from L1/L2, mc×kc of A stays in L2 (1 MiB on the
// Zen 4 development machine), kc×nc of B in L3. kc=256, mc=240 won a sweep of kc 128–384 and
// mc 72–240 on the training shapes (single thread, vs OpenBLAS: 89–106%); nc=3072.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

extern const KernelTable<float> f32_gemm_6x16_avx2 =
    kernel_table<float, 6, 16, 32>(256, 240, 3072, "avx2");

}  // namespace deltaprop
