// Square block transposes in 32-byte vectors (8×8 float, 4×4 double), for packing Wᵀ: the delta
// product D·Wᵀ reads W by columns, and an element-by-element copy of a transposed panel cost ~6
// cycles an element (7% of a wide network's step). Loads and stores are whole rows; the
// shuffles are the unpack / shuffle / lane-permute network of the classic AVX transpose.
#pragma once

#include <cstddef>

namespace deltaprop {

template <typename T>
constexpr int transpose_block_size = 32 / int(sizeof(T));

namespace detail {

typedef float Row8 __attribute__((vector_size(32), aligned(4)));

// out[q][r] = r_in[r][q] for r, q < 8, for vectors of eight lanes of any type (the online
// step's deltas reduce eight rows' partial sums with it too).
template <typename Row>
inline void transpose8x8(const Row (&r)[8], Row (&out)[8]) {
  Row t[8];  // pairs of rows interleaved within each 128-bit lane (of floats)
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[2 * i + 1] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  Row u[8];  // quarters of columns gathered within each lane
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 2; ++i) {
      const Row& a = t[4 * h + i];
      const Row& b = t[4 * h + i + 2];
      u[4 * h + 2 * i] = __builtin_shufflevector(a, b, 0, 1, 8, 9, 4, 5, 12, 13);
      u[4 * h + 2 * i + 1] = __builtin_shufflevector(a, b, 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int q = 0; q < 4; ++q) {  // lanes swapped across the two halves
    out[q] = __builtin_shufflevector(u[q], u[q + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    out[q + 4] = __builtin_shufflevector(u[q], u[q + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

}  // namespace detail

// dst[q*ld_dst + r] = src[r*ld_src + q] for r, q < 8.
inline void transpose_block(const float* src, std::ptrdiff_t ld_src, float* dst,
                            std::ptrdiff_t ld_dst) {
  detail::Row8 r[8], out[8];
  for (int i = 0; i < 8; ++i) r[i] = *reinterpret_cast<const detail::Row8*>(src + i * ld_src);
  detail::transpose8x8(r, out);
  for (int q = 0; q < 8; ++q) *reinterpret_cast<detail::Row8*>(dst + q * ld_dst) = out[q];
}

// dst[q*ld_dst + r] = src[r*ld_src + q] for r < rows (< 8), q < 8, with ld_dst >= rows. Each of
// the eight transposed rows is stored whole, in order of q, so the 8 − rows elements past it
// (zeros) land on the first slots of row q + 1, which the next store overwrites. The caller
// makes sure that row 8 exists and is written afterwards: the last store spills into it.
// `rows` is a constant so that the eight rows stay in registers: as an argument, the rows went
// through the stack, zeroed by a `rep stos` each block, and packing A took 1.8% of
// 256×2048 · 2048×2048 at 1 thread.
template <int rows>
inline void transpose_short_block(const float* src, std::ptrdiff_t ld_src, float* dst,
                                  std::ptrdiff_t ld_dst) {
  static_assert(rows < 8, "eight rows are a whole block");
  detail::Row8 r[8], out[8];
  for (int i = 0; i < 8; ++i)
    r[i] = i < rows ? *reinterpret_cast<const detail::Row8*>(src + i * ld_src) : detail::Row8{};
  detail::transpose8x8(r, out);
  for (int q = 0; q < 8; ++q) *reinterpret_cast<detail::Row8*>(dst + q * ld_dst) = out[q];
}

// dst[q*ld_dst + r] = src[r*ld_src + q] for r, q < 4.
inline void transpose_block(const double* src, std::ptrdiff_t ld_src, double* dst,
                            std::ptrdiff_t ld_dst) {
  typedef double V __attribute__((vector_size(32), aligned(8)));
  V r[4];
  for (int i = 0; i < 4; ++i) r[i] = *reinterpret_cast<const V*>(src + i * ld_src);
  const V t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 2, 6);
  const V t1 = __builtin_shufflevector(r[0], r[1], 1, 5, 3, 7);
  const V t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 2, 6);
  const V t3 = __builtin_shufflevector(r[2], r[3], 1, 5, 3, 7);
  *reinterpret_cast<V*>(dst) = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
  *reinterpret_cast<V*>(dst + ld_dst) = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
  *reinterpret_cast<V*>(dst + 2 * ld_dst) = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
  *reinterpret_cast<V*>(dst + 3 * ld_dst) = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
}

}  // namespace deltaprop
