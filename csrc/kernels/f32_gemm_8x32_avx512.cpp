// ISA: AVX-512F (-mavx512f). Tile: 8×32 float (64-byte vectors): 16 accumulators, 2 B vectors
// and a broadcast in 19 of the 32 zmm registers. Eight rows divide the batch sizes and layer
// widths training uses (32, 64, 128, 256, 784), where six left a part-empty tile at every
// edge: a digits-shaped fit (batch 32) trained 5% faster at 1 thread, MNIST-shaped ones 0–5%
// (interleaved runs, Intel Xeon with AVX-512).
// Packing: a is 8-major (a[p*8 + i]), b is 32-major (b[p*32 + j]), both 64-byte aligned.
// Blocking: a kc×32 panel of B streams from L1/L2, mc×kc of A stays in L2 (1 MiB on the
// Zen 4 development machine), kc×nc of B in L3. kc=256, mc=240 won a sweep of kc 128–384 and
// mc 72–240 on the training shapes (single thread, vs OpenBLAS: 89–106%); nc=3072.
#include "deltaprop/kernels.hpp"
#include "gemm_microkernel.hpp"

namespace deltaprop {

extern const KernelTable<float> f32_gemm_8x32_avx512 =
    kernel_table<float, 8, 32, 64>(256, 240, 3072, "avx512");

}  // namespace deltaprop
