// The microkernel slot: an MR×NR register tile over a packed B panel and A packed or read in
// place, with the cache-blocking sizes that suit it. One table per (type, ISA); dispatch.cpp
// picks one at import.
//
// Contract of `gemm`: for i < MR, j < NR,
//   c_out[i*ldc_out + j] = (c_in ? c_in[i*ldc_in + j] : 0) + Σ_{p<kc} A(i, p) · b[p*b_rs + j]
//   where A(i, p) = a[i*a_rs + p*a_cs] and a_rs == 1 or a_cs == 1: a packed MR-major panel
//   (a_rs = 1, a_cs = MR), or MR whole rows of A read in place, from a row-major (a_cs = 1) or
//   transposed (a_rs = 1) matrix. b is an NR-major packed panel
//   (b_rs = NR), 64-byte aligned and zero-padded to NR, or NR whole columns of a row-major
//   matrix read in place (b_rs its row length, never NR), any alignment; c_in (may be c_out) and c_out
//   are full MR×NR tiles, any alignment. Kernels allocate nothing, start no threads and touch
//   nothing else.
// Contract of `column`: `gemm` for `tiles` full tiles down a column panel, tile t with A at
//   a + t·a_step and C's rows from t·MR on (c_in's and c_out's); before each tile but the first
//   it has asked for the next tile's partial sums (c_in), as gemm_block does for a single tile.
//   Returns max |c_out| over the tiles where `measure` (NaN or infinity for a sum that is not
//   finite), otherwise 0. For a column panel that overhangs C's last column, cols < NR: c_in and
//   c_out are then read and written in their first `cols` columns only.
#pragma once

#include <cstddef>  // std::ptrdiff_t only: a typedef, no code

// Kernel files include this header and nothing from the standard library but <cstddef>'s
// typedefs (see csrc/kernels/gemm_microkernel.hpp for why).

namespace deltaprop {

template <typename T>
struct KernelTable {
  typedef void (*Kernel)(int kc, const T* a, std::ptrdiff_t a_rs, std::ptrdiff_t a_cs,
                         const T* b, std::ptrdiff_t b_rs, const T* c_in, std::ptrdiff_t ldc_in,
                         T* c_out, std::ptrdiff_t ldc_out);
  typedef T (*Column)(int kc, int tiles, const T* a, std::ptrdiff_t a_rs, std::ptrdiff_t a_cs,
                      std::ptrdiff_t a_step, const T* b, std::ptrdiff_t b_rs, const T* c_in,
                      std::ptrdiff_t ldc_in, T* c_out, std::ptrdiff_t ldc_out, bool measure,
                      int cols);
  Kernel gemm;
  Column column;
  int mr, nr;      // register tile
  int kc, mc, nc;  // blocking: a kc×nr panel of B in L1, mc×kc of A in L2, kc×nc of B in L3
  const char* isa;
  // edge[r], r < MR: the same contract for the first r rows only (A's rows i < r are read, C's
  // rows i < r written), for the tiles at C's last rows: a batch of 32 on six-row tiles ends in
  // a tile of two, which MR rows of multiply-adds would triple. edge[0] is unused.
  Kernel edge[8];
};

// Internal linkage, so that each kernel file's copy, built with its own ISA flags, stays its own
// (kernel files share no inline function with the baseline parts of the module).
namespace {

// ask(line) for every cache line of the rows×cols block at c (leading dimension ldc).
template <typename T, typename Ask>
inline void ask_for_block(const T* c, std::ptrdiff_t ldc, std::ptrdiff_t rows,
                          std::ptrdiff_t cols, Ask ask) {
  constexpr std::ptrdiff_t line = 64;
  for (std::ptrdiff_t r = 0; r < rows; ++r) {
    const char* row = reinterpret_cast<const char*>(c + r * ldc);
    const std::ptrdiff_t bytes = cols * std::ptrdiff_t(sizeof(T));
    for (std::ptrdiff_t at = 0; at < bytes; at += line) ask(row + at);
    ask(row + bytes - 1);  // the last line, where the row is not line-aligned
  }
}

// Ask for the rows×cols block of C at c, whose partial sums the next tile starts from. Where C is
// too large for L2 (2048² floats: 16 MiB) they come from L3 or memory, and the microkernel, which
// loads them before its first multiply-add, would wait out the misses: requested one tile
// ahead, they arrive while the current tile runs (2048² sgemm at 1 thread: 114 → 141 GFLOP/s).
template <typename T>
inline void prefetch_block(const T* c, std::ptrdiff_t ldc, std::ptrdiff_t rows,
                           std::ptrdiff_t cols) {
  ask_for_block(c, ldc, rows, cols, [](const char* p) { __builtin_prefetch(p, 1); });
}

}  // namespace

// Defined in csrc/kernels/, one per file.
extern const KernelTable<float> f32_gemm_4x8_generic;
extern const KernelTable<double> f64_gemm_4x4_generic;
#if DELTAPROP_X86
extern const KernelTable<float> f32_gemm_6x16_avx2;
extern const KernelTable<double> f64_gemm_6x8_avx2;
extern const KernelTable<float> f32_gemm_8x32_avx512;
extern const KernelTable<float> f32_gemm_8x16_avx512;
extern const KernelTable<double> f64_gemm_8x16_avx512;
extern const KernelTable<double> f64_gemm_8x8_avx512;
#endif

}  // namespace deltaprop
