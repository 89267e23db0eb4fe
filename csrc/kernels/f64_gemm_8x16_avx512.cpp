// ISA: AVX-512F (-mavx512f). Tile: 8×16 double (64-byte vectors), for the reasons of the 8×32
// float tile (f32_gemm_8x32_avx512.cpp).
// Packing: a is 8-major (a[p*8 + i]), b is 16-major (b[p*16 + j]), both 64-byte aligned.
// Blocking: a kc×16 panel of B streams from L1/L2, mc×kc of A stays in L2 (1 MiB on the
// Zen 4 development machine), kc×nc of B in L3. kc=256, mc=240 won a sweep of kc 128–384 and
// mc 72–240 on the training shapes (single thread, vs OpenBLAS: 89–106%); nc=1536.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

extern const KernelTable<double> f64_gemm_8x16_avx512 =
    kernel_table<double, 8, 16, 64>(256, 240, 1536, "avx512");

}  // namespace deltaprop
