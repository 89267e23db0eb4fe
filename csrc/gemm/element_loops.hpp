// A finished tile's epilogue, and the per-ISA copies of the loops around the microkernel with
// the table that picks one (gemm.cpp's; included there alone, as its functions are that file's).
#pragma once

#include <cstddef>
#include <type_traits>

#include "deltaprop/dispatch.hpp"
#include "deltaprop/gemm.hpp"
#include "deltaprop/magnitude.hpp"
#include "packing.hpp"
#include "unpacked.hpp"

namespace deltaprop {

namespace {

// Apply the epilogue to a finished rows×cols block of products at C(i0, j0), in vectors of
// `vector_bytes`; returns what ep.measure asks for over the block (gemm.hpp), or 0.
template <std::size_t vector_bytes, typename T, typename Cols>
inline double finish_rows(const Epilogue<T>& ep, std::ptrdiff_t n, std::ptrdiff_t i0,
                          std::ptrdiff_t j0, std::ptrdiff_t rows, Cols cols, const T* tile,
                          std::ptrdiff_t ldt, T* c, std::ptrdiff_t ldc) {
  // C is only addressed by the kinds that write it: the optimizer may run without one.
  auto c_row = [&](std::ptrdiff_t r) { return c + (i0 + r) * ldc + j0; };
  const std::ptrdiff_t at = i0 * n + j0;  // the block's first element in m×n epilogue arrays
  auto largest_of_rows = [&](const T* p, std::ptrdiff_t ld) {
    LargestMagnitude<T> largest;
    for (std::ptrdiff_t r = 0; r < rows; ++r) largest.add(p + r * ld, std::size_t(cols));
    return largest.value();
  };
  switch (ep.kind) {
    case EpilogueKind::store:
      if (tile != c_row(0))
        for (std::ptrdiff_t r = 0; r < rows; ++r)
          copy_row(tile + r * ldt, c_row(r), std::size_t(cols));
      return 0;
    case EpilogueKind::bias_activation: {
      const double products = ep.measure == Measure::products ? largest_of_rows(tile, ldt) : 0;
      activate_rows<vector_bytes>(ep.activation, ep.alpha, tile, ldt,
                                  ep.bias ? ep.bias + j0 : nullptr, c_row(0), ldc, rows,
                                  std::size_t(cols));
      return ep.measure == Measure::output ? largest_of_rows(c_row(0), ldc) : products;
    }
    case EpilogueKind::derivative:
      multiply_derivative_rows<vector_bytes>(ep.activation, ep.alpha, tile, ldt, ep.out + at, n,
                                             c_row(0), ldc, rows, std::size_t(cols));
      return ep.measure == Measure::output ? largest_of_rows(c_row(0), ldc) : 0;
    case EpilogueKind::optimizer:
      if (ep.keep_gradient)
        for (std::ptrdiff_t r = 0; r < rows; ++r)
          copy_row(tile + r * ldt, c_row(r), std::size_t(cols));
      apply_update_rows<vector_bytes>(ep.step, ep.param + at, n, tile, ldt,
                                      ep.m ? ep.m + at : nullptr, ep.v ? ep.v + at : nullptr, rows,
                                      std::size_t(cols), true);
      return 0;
  }
  return 0;
}

// A tile is as wide as the microkernel's NR except at C's edge. With that width known at compile
// time, each row's epilogue is a few whole vectors with no loop control or remainder code; the
// optimizer's kind and the activation are tested once per tile, not per row. The element loops
// are written in explicit vectors (elementwise.hpp), as GCC's vectoriser unrolled fixed-width
// rows and left parts scalar. A digits-shaped fit's epilogues took 16.7M instructions of 76.0M
// (AVX2: a loop per row and tests before each); they take 6.1M now, the same arithmetic.
// Only the widths of the copy's own microkernels are compiled as constants: 32-float tiles
// exist on AVX-512 only.
template <typename T, std::size_t vector_bytes>
double finish_tile(const Epilogue<T>& ep, std::ptrdiff_t n, std::ptrdiff_t i0, std::ptrdiff_t j0,
                   std::ptrdiff_t rows, std::ptrdiff_t cols, const T* tile, std::ptrdiff_t ldt,
                   T* c, std::ptrdiff_t ldc) {
  using Width32 = std::integral_constant<std::ptrdiff_t, 32>;
  using Width16 = std::integral_constant<std::ptrdiff_t, 16>;
  using Width8 = std::integral_constant<std::ptrdiff_t, 8>;
  switch (cols) {
    case 32:
      if constexpr (vector_bytes == 64)
        return finish_rows<vector_bytes>(ep, n, i0, j0, rows, Width32{}, tile, ldt, c, ldc);
      break;
    case 16: return finish_rows<vector_bytes>(ep, n, i0, j0, rows, Width16{}, tile, ldt, c, ldc);
    case 8: return finish_rows<vector_bytes>(ep, n, i0, j0, rows, Width8{}, tile, ldt, c, ldc);
    default: break;
  }
  return finish_rows<vector_bytes>(ep, n, i0, j0, rows, cols, tile, ldt, c, ldc);
}

// The loops around the microkernel that touch every element — the epilogue, the unpacked path
// and the packing — are compiled once per ISA: `flatten` inlines them (activations, exp,
// optimizer, transposes) into a function built for that target, and the dispatcher picks the
// copy that matches the kernel. Each copy's vectors are its target's registers: the baseline
// copy's were once 32 bytes, which SSE2 holds in two registers, and GCC then compared and
// selected lane by lane (336 of the float epilogue's 377 compares scalar) and kept the unpacked
// path's sums on the stack: on DELTAPROP_ISA=generic a digits-shaped fit trained 11% faster with
// them 16 bytes wide (1 thread, paired in one process, median of 10 rounds).
template <typename T>
struct ElementLoops {
  double (*finish_tile)(const Epilogue<T>&, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t,
                        std::ptrdiff_t, std::ptrdiff_t, const T*, std::ptrdiff_t, T*, std::ptrdiff_t);
  void (*unpacked_row)(std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t,
                       MatrixView<T>, MatrixView<T>, T*);
  void (*pack_a)(MatrixView<T>, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t,
                 int, T*);
  void (*pack_b)(MatrixView<T>, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t,
                 int, T*);
};

#define DELTAPROP_ELEMENT_LOOPS(suffix, attributes, vector_bytes, block_transposes)          \
  template <typename T>                                                                          \
  attributes double finish_tile_##suffix(const Epilogue<T>& ep, std::ptrdiff_t n,              \
                                         std::ptrdiff_t i0, std::ptrdiff_t j0, std::ptrdiff_t rows, \
                                         std::ptrdiff_t cols, const T* tile, std::ptrdiff_t ldt, \
                                         T* c, std::ptrdiff_t ldc) {                             \
    return finish_tile<T, vector_bytes>(ep, n, i0, j0, rows, cols, tile, ldt, c, ldc);           \
  }                                                                                              \
  template <typename T>                                                                          \
  attributes void unpacked_row_##suffix(std::ptrdiff_t i, std::ptrdiff_t n, std::ptrdiff_t k,    \
                                        std::ptrdiff_t kc, MatrixView<T> a, MatrixView<T> b,     \
                                        T* row) {                                                \
    unpacked_row<vector_bytes>(i, n, k, kc, a, b, row);                                          \
  }                                                                                              \
  template <typename T>                                                                          \
  attributes void pack_a_##suffix(MatrixView<T> a, std::ptrdiff_t i0, std::ptrdiff_t p0,        \
                                  std::ptrdiff_t rows, std::ptrdiff_t kc, int mr, T* dst) {      \
    pack_a<T, block_transposes>(a, i0, p0, rows, kc, mr, dst);                                   \
  }                                                                                              \
  template <typename T>                                                                          \
  attributes void pack_b_##suffix(MatrixView<T> b, std::ptrdiff_t p0, std::ptrdiff_t j0,        \
                                  std::ptrdiff_t kc, std::ptrdiff_t cols, int nr, T* dst) {      \
    pack_b<T, block_transposes>(b, p0, j0, kc, cols, nr, dst);                                   \
  }

DELTAPROP_ELEMENT_LOOPS(generic, __attribute__((flatten)), 16, false)
#if DELTAPROP_X86
DELTAPROP_ELEMENT_LOOPS(avx2, __attribute__((target("avx2,fma"), flatten)), 32, true)
DELTAPROP_ELEMENT_LOOPS(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"), flatten)),
                        64, true)
#endif
#undef DELTAPROP_ELEMENT_LOOPS

template <typename T>
ElementLoops<T> element_loops() {
#if DELTAPROP_X86
  switch (current_isa()) {
    case Isa::avx512:
      return {finish_tile_avx512<T>, unpacked_row_avx512<T>, pack_a_avx512<T>, pack_b_avx512<T>};
    case Isa::avx2:
      return {finish_tile_avx2<T>, unpacked_row_avx2<T>, pack_a_avx2<T>, pack_b_avx2<T>};
    default: break;
  }
#endif
  return {finish_tile_generic<T>, unpacked_row_generic<T>, pack_a_generic<T>, pack_b_generic<T>};
}

}  // namespace

}  // namespace deltaprop
