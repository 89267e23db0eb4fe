// ISA: baseline (SSE2 on x86-64; the host's baseline elsewhere). Tile: 4×8 float (16-byte vectors).
// Packing: a is 4-major (a[p*4 + i]), b is 8-major (b[p*8 + j]), both 64-byte aligned.
// Blocking: kc=256 keeps a kc×8 panel of B in L1; mc=192 keeps mc×kc of A in L2 (1 MiB on the
// Zen 4 development machine); nc=2048 keeps kc×nc of B in L3.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

extern const KernelTable<float> f32_gemm_4x8_generic =
    kernel_table<float, 4, 8, 16>(256, 192, 2048, "generic");

}  // namespace deltaprop
