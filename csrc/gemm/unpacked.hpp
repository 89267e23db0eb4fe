// The direct loops for products too small or thin to repay packing (gemm.cpp's gemm_unpacked),
// and the depth blocks that both they and the packed loop nest sum k in. Header-only: gemm.cpp
// compiles a copy of these loops for each ISA, as it does the epilogues and the packing.
#pragma once

#include <cstddef>
#include <cstring>
#include <utility>

#include "deltaprop/gemm.hpp"

namespace deltaprop {

// The depth of the block of a k-term sum that starts at term pc: kc_max, except that the last
// block takes in a remainder of up to kc_max/8. k = 784 (MNIST's inputs) ran as 256 + 256 + 256
// + 16, and the block of 16 paid a pass over C's partial sums and a packing of B for few
// multiply-adds. As 256 + 256 + 272, an MNIST-shaped fit trained 1.1% faster at 1 thread and
// 0.8% at 2 (8 of 8 paired rounds each); blocks of equal depth (4 × 196, 3 × 262) were faster
// at 1 thread but made 128×784 · 784×256 at 2 threads 4-10% slower.
inline std::ptrdiff_t deepest_block(std::ptrdiff_t kc_max) { return kc_max + kc_max / 8; }
inline std::ptrdiff_t depth_block(std::ptrdiff_t k, std::ptrdiff_t pc, std::ptrdiff_t kc_max) {
  return k - pc <= deepest_block(kc_max) ? k - pc : kc_max;
}

// p[0], p[1], ... (one per lane in the pack) as a vector, the rest zero: lane by lane, as a
// memcpy of a short vector went through the stack and each load waited on the stores.
template <typename V, typename T, int... lane>
V load_lanes(const T* p, std::integer_sequence<int, lane...>) {
  return V{p[lane]...};
}

// Sums of `count` vectors of row i of C from column j, the last holding `last_lanes` columns,
// added as the packed kernel adds them: over k in order within a depth block, in registers, then
// each block's sum to the earlier blocks'. The columns past the last vector are a short vector
// too, as the kernel's are (its B panels are zero-padded), so that both contract into fused
// multiply-adds alike, or both do not: as scalars, GCC vectorised a few such columns across k
// at -O3 and added their products apart.
template <typename V, int count, int last_lanes, typename T>
void sums_in_depth_blocks(std::ptrdiff_t i, std::ptrdiff_t j, std::ptrdiff_t k, std::ptrdiff_t kc,
                          MatrixView<T> a, MatrixView<T> b, T* row) {
  constexpr int width = sizeof(V) / sizeof(T);
  auto lanes = [](int c) { return c + 1 == count ? last_lanes : width; };
  V total[count];
  for (int c = 0; c < count; ++c) total[c] = V{};  // k >= 1: set by the first block
  for (std::ptrdiff_t pc = 0, depth = 0; pc < k; pc += depth) {
    depth = depth_block(k, pc, kc);
    V sum[count];
    for (int c = 0; c < count; ++c) sum[c] = V{};
    for (std::ptrdiff_t p = pc; p < pc + depth; ++p) {
      const T aip = a(i, p);
      const T* b_row = b.data + p * b.rs + j;
      for (int c = 0; c < count; ++c) {
        V bv;
        if (lanes(c) == width)
          std::memcpy(&bv, b_row + c * width, sizeof(V));
        else
          bv = load_lanes<V>(b_row + c * width, std::make_integer_sequence<int, last_lanes>{});
        sum[c] += aip * bv;
      }
    }
    for (int c = 0; c < count; ++c) total[c] = pc == 0 ? sum[c] : sum[c] + total[c];
  }
  for (int c = 0; c < count; ++c)
    for (int l = 0; l < lanes(c); ++l) row[j + c * width + l] = total[c][l];
}

// The last `left` (< one vector) columns of the row: a copy for each count.
template <typename V, typename T, int... counts>
void last_columns(int left, std::ptrdiff_t i, std::ptrdiff_t j, std::ptrdiff_t k, std::ptrdiff_t kc,
                  MatrixView<T> a, MatrixView<T> b, T* row, std::integer_sequence<int, counts...>) {
  ((left == counts + 1 ? sums_in_depth_blocks<V, 1, counts + 1>(i, j, k, kc, a, b, row) : void()),
   ...);
}

// Direct loops for products too small or thin to repay packing (batch 1, one output unit):
// one output row at a time. Where B's rows are contiguous (W in a forward product) each element
// is summed as the packed kernel sums it, so that a row alone (the prediction of one sample) gets
// the bits it gets in a batch, and in registers: whole vectors of the row, then the columns left
// over. Summed in memory, as they were, each multiply-add waited ~9 cycles for the store of the
// one before (a 13-64-1 regression network at batch 32 trained 2.3× faster for registers alone).
// A row of one element, which is never packed, or a B read across its rows, is dot products of
// eight partial sums in a fixed pattern.
template <std::size_t vector_bytes, typename T>
void unpacked_row(std::ptrdiff_t i, std::ptrdiff_t n, std::ptrdiff_t k, std::ptrdiff_t kc,
                  MatrixView<T> a, MatrixView<T> b, T* row) {
  typedef T V __attribute__((vector_size(vector_bytes)));
  constexpr int w = vector_bytes / sizeof(T);
  if (b.cs == 1 && n > 1) {
    std::ptrdiff_t j = 0;
    for (; j + 4 * w <= n; j += 4 * w) sums_in_depth_blocks<V, 4, w>(i, j, k, kc, a, b, row);
    for (; j + w <= n; j += w) sums_in_depth_blocks<V, 1, w>(i, j, k, kc, a, b, row);
    if (j < n)
      last_columns<V>(static_cast<int>(n - j), i, j, k, kc, a, b, row,
                      std::make_integer_sequence<int, w - 1>{});
    return;
  }
  for (std::ptrdiff_t j = 0; j < n; ++j) {
    T partial[8] = {};
    std::ptrdiff_t p = 0;
    for (; p + 8 <= k; p += 8)
      for (int u = 0; u < 8; ++u) partial[u] += a(i, p + u) * b(p + u, j);
    T sum = 0;
    for (; p < k; ++p) sum += a(i, p) * b(p, j);
    for (int u = 0; u < 8; ++u) sum += partial[u];
    row[j] = sum;
  }
}

}  // namespace deltaprop
