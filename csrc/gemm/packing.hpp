// Packing, the copies that lay A and B out as the microkernel streams them: A into MR-tall
// panels, B into NR-wide ones (gemm.cpp's loop nest). Header-only: gemm.cpp compiles a copy of
// these loops for each ISA, as it does the epilogues and the unpacked loops.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "deltaprop/activation.hpp"
#include "deltaprop/gemm.hpp"
#include "transpose.hpp"

namespace deltaprop {

// copy(panel, p) for the kc rows of `panels` panels, where the source runs along rows p across
// the panels: four rows a panel at a time, so that each panel gets four consecutive rows (whole
// lines, one after another) before the copy moves on. A row at a time, each store went to a line
// a panel (16 KB) from the last, all in one of L1's sets, and packing B ran at 0.7× memcpy's
// speed (2 MB blocks of a 2048² W, 245 against 177 µs; 256×2048 · 2048×2048 at 1 thread +1.7%,
// 10 of 12 rounds).
template <typename Copy>
inline void rows_into_panels(std::ptrdiff_t kc, std::ptrdiff_t panels, const Copy& copy) {
  constexpr std::ptrdiff_t rows_together = 4;
  for (std::ptrdiff_t q = 0; q < kc; q += rows_together) {
    const std::ptrdiff_t q_end = std::min(kc, q + rows_together);
    for (std::ptrdiff_t panel = 0; panel < panels; ++panel)
      for (std::ptrdiff_t p = q; p < q_end; ++p) copy(panel, p);
  }
}

// Copy the rows×kc block A(i0.., p0..) (rows <= MR) of a row-major A, or of a view with no unit
// stride, into one MR-major panel. A whole panel goes through square block transposes where
// `block_transposes`: element by element, packing A took 5% of a 2048² product at 1 thread and
// more at 2, where each thread packs all of A. Float panels of six rows (AVX2) take transposes
// of six rows and two of zeros.
template <typename T, bool block_transposes>
void pack_a_panel(MatrixView<T> a, std::ptrdiff_t i0, std::ptrdiff_t p0, std::ptrdiff_t rows,
                  std::ptrdiff_t kc, int mr, T* dst) {
  constexpr std::ptrdiff_t s = transpose_block_size<T>;
  std::ptrdiff_t p = 0;
  if (block_transposes && a.cs == 1 && rows == mr) {
    if (mr % s == 0) {
      for (; p + s <= kc; p += s)
        for (std::ptrdiff_t i = 0; i < mr; i += s)
          transpose_block(&a(i0 + i, p0 + p), a.rs, dst + p * mr + i, mr);
    } else if constexpr (std::is_same_v<T, float>) {
      if (mr == 6)  // `p + s < kc`: the element-wise loop below overwrites the last block's spill
        for (; p + s < kc; p += s)
          transpose_short_block<6>(&a(i0, p0 + p), a.rs, dst + p * mr, mr);
    }
  }
  for (std::ptrdiff_t i = 0; i < rows; ++i)
    for (std::ptrdiff_t q = p; q < kc; ++q) dst[q * mr + i] = a(i0 + i, p0 + q);
}

// Copy the rows×kc block A(i0.., p0..) into MR-major panels, one after another (kc·MR elements
// each); a last panel of fewer than MR rows is read by the kernel of its rows, so nothing past
// them is written. Runs only where A is not read in place (wide blocks of C, or a view with no
// unit stride).
template <typename T, bool block_transposes>
void pack_a(MatrixView<T> a, std::ptrdiff_t i0, std::ptrdiff_t p0, std::ptrdiff_t rows,
            std::ptrdiff_t kc, int mr, T* dst) {
  const std::ptrdiff_t panels = (rows + mr - 1) / mr;
  if (a.rs != 1) {
    for (std::ptrdiff_t ir = 0; ir < panels; ++ir)
      pack_a_panel<T, block_transposes>(a, i0 + ir * mr, p0,
                                        std::min<std::ptrdiff_t>(mr, rows - ir * mr), kc, mr,
                                        dst + ir * mr * kc);
    return;
  }
  // Aᵀ of a row-major array: each column of a panel is a piece of one of the array's rows,
  // copied along those rows (panel by panel, each panel read its kc rows 4 KB apart in a
  // 1024-wide array, all in one of L1's sets, and the next panel read the same lines again).
  // A whole panel's pieces are copied at a size known here (MR of the AVX2 and AVX-512 tiles).
  auto copy_pieces = [&](auto width) {
    rows_into_panels(kc, panels, [&](std::ptrdiff_t ir, std::ptrdiff_t p) {
      const std::ptrdiff_t first = i0 + ir * mr, edge = rows - ir * mr;
      T* to = dst + (ir * kc + p) * mr;
      if (edge >= mr)
        copy_row(&a(first, p0 + p), to, std::size_t(width));
      else
        copy_row(&a(first, p0 + p), to, std::size_t(edge));
    });
  };
  if (mr == 6)
    copy_pieces(std::integral_constant<std::ptrdiff_t, 6>{});
  else if (mr == 8)
    copy_pieces(std::integral_constant<std::ptrdiff_t, 8>{});
  else
    copy_pieces(std::ptrdiff_t(mr));
}

// Copy the kc×cols block B(p0.., j0..) into NR-major panels, one after another (kc·NR elements
// each), zero-padding the last one's columns up to NR. Wᵀ (each column of B a contiguous row of
// W) goes through square block transposes where `block_transposes` (the AVX2 and AVX-512 copies;
// baseline SSE2 would emulate the shuffles).
template <typename T, bool block_transposes>
void pack_b(MatrixView<T> b, std::ptrdiff_t p0, std::ptrdiff_t j0, std::ptrdiff_t kc,
            std::ptrdiff_t cols, int nr, T* dst) {
  const std::ptrdiff_t whole = cols / nr, edge = cols % nr;
  if (b.cs == 1) {
    // Row by row across all the panels, so B is read along its rows: panel by panel, each
    // row of a panel was a new page of a wide B, which the hardware prefetcher does not follow
    // (packing took 9% of 256×2048 · 2048×2048, which ran 4-6% faster this way at 1 thread; a
    // wide-shaped fit 2-7%; no change measured at 2 threads, or for MNIST and digits shapes).
    // Rows of a whole panel are copied at a size known here, as a few vector moves: memcpy
    // calls, one per 128-byte row, took 6% of a digits-shaped fit's time.
    auto copy_rows = [&](auto width) {
      rows_into_panels(kc, whole, [&](std::ptrdiff_t jr, std::ptrdiff_t p) {
        std::memcpy(dst + (jr * kc + p) * nr, &b(p0 + p, j0 + jr * nr), width * sizeof(T));
      });
    };
    if (nr == 32)
      copy_rows(std::integral_constant<std::ptrdiff_t, 32>{});
    else if (nr == 16)
      copy_rows(std::integral_constant<std::ptrdiff_t, 16>{});
    else if (nr == 8)
      copy_rows(std::integral_constant<std::ptrdiff_t, 8>{});
    else
      copy_rows(std::ptrdiff_t(nr));
    if (edge) {
      T* panel = dst + whole * kc * nr;
      std::fill(panel, panel + kc * nr, T(0));
      for (std::ptrdiff_t p = 0; p < kc; ++p)
        copy_row(&b(p0 + p, j0 + whole * nr), panel + p * nr, std::size_t(edge));
    }
    return;
  }
  for (std::ptrdiff_t jr = 0; jr * nr < cols; ++jr) {
    const std::ptrdiff_t j1 = j0 + jr * nr, width = std::min<std::ptrdiff_t>(nr, cols - jr * nr);
    T* panel = dst + jr * kc * nr;
    if (width < nr) std::fill(panel, panel + kc * nr, T(0));
    constexpr std::ptrdiff_t s = transpose_block_size<T>;
    std::ptrdiff_t p = 0;
    if (block_transposes && b.rs == 1) {
      // s of W's rows at a time, each read along its kc elements, down the panel: across the
      // panel, a block row at a time, the copy read all NR rows at once, more streams than the
      // hardware prefetcher follows, and ran at a third of the straight copy's speed (one
      // thread's 8 MB of a 2048² Wᵀ from L3: 1,070 µs, now 430-520, the straight copy 300).
      const std::ptrdiff_t blocks_end = kc / s * s, whole = width / s * s;
      for (std::ptrdiff_t j = 0; j < whole; j += s)
        for (std::ptrdiff_t q = 0; q < blocks_end; q += s)
          transpose_block(&b(p0 + q, j1 + j), b.cs, panel + q * nr + j, nr);
      for (std::ptrdiff_t q = 0; q < blocks_end; ++q)
        for (std::ptrdiff_t j = whole; j < width; ++j) panel[q * nr + j] = b(p0 + q, j1 + j);
      p = blocks_end;
    }
    for (; p < kc; ++p)
      for (std::ptrdiff_t j = 0; j < width; ++j) panel[p * nr + j] = b(p0 + p, j1 + j);
  }
}

}  // namespace deltaprop
