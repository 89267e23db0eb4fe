// ISA: baseline (SSE2 on x86-64; the host's baseline elsewhere). Tile: 4×4 double (16-byte vectors).
// Packing: a is 4-major (a[p*4 + i]), b is 4-major (b[p*4 + j]), both 64-byte aligned.
// Blocking: kc=256 keeps a kc×4 panel of B in L1; mc=96 keeps mc×kc of A in L2 (1 MiB on the
// Zen 4 development machine); nc=1024 keeps kc×nc of B in L3.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

extern const KernelTable<double> f64_gemm_4x4_generic =
    kernel_table<double, 4, 4, 16>(256, 96, 1024, "generic");

}  // namespace deltaprop
