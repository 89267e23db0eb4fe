// Elementwise loops over a row in explicit vectors of the ISA's register width, for functions
// written once for a T and for a GCC vector of T (`auto` parameters).
//
// GCC's vectoriser, left to plain loops, handles a row of a width known only at run time well
// enough, but at a width known at compile time (the 16-float rows of a GEMM tile) it unrolled the
// loop first and then left parts of it scalar: selects (ReLU and its derivative), and stores it
// could not prove apart from later loads. Written as vectors, a 16-float row is two of each
// operation and nothing else.
#pragma once

#include <cstddef>

#include "deltaprop/dispatch.hpp"

namespace deltaprop {

// y[j] = f(x[j], w[j]) in vectors of `bytes`. y may be x (each vector is loaded before it is
// stored).
template <std::size_t bytes, typename T, typename F>
inline void zip_vectors(const T* x, const T* w, T* y, std::size_t n, const F& f) {
  typedef T V __attribute__((vector_size(bytes)));
  constexpr std::size_t lanes = bytes / sizeof(T);
  const std::size_t whole = n - n % lanes;
  for (std::size_t j = 0; j < whole; j += lanes) {
    V a, b;
    __builtin_memcpy(&a, x + j, sizeof a);
    __builtin_memcpy(&b, w + j, sizeof b);
    const V r = f(a, b);
    __builtin_memcpy(y + j, &r, sizeof r);
  }
  // The rest in vectors half as wide, down to 16 bytes, then lane by lane: a 10-float row is
  // one vector of 8 and two lanes on AVX2, and one of 8 and two lanes on AVX-512 too.
  if constexpr (bytes > 16)
    zip_vectors<bytes / 2>(x + whole, w + whole, y + whole, n - whole, f);
  else
    for (std::size_t j = whole; j < n; ++j) y[j] = f(x[j], w[j]);
}

// zip_vectors in the ISA's register width: `vector_bytes` where the caller is compiled for one
// ISA (the GEMM's epilogues; asking at run time, each of their copies compiled every width,
// and gemm.cpp took 3× as long to build), otherwise the width of the ISA in use. Vectors wider
// than the registers are no remedy for the baseline ISA: GCC split their compares and selects
// into lanes, so its width is SSE2's and NEON's 16 bytes.
template <std::size_t vector_bytes = 0, typename T, typename F>
inline void zip_row(const T* x, const T* w, T* y, std::size_t n, const F& f) {
  if constexpr (vector_bytes != 0)
    zip_vectors<vector_bytes>(x, w, y, n, f);
  else if (current_isa() == Isa::avx512)
    zip_vectors<64>(x, w, y, n, f);
  else if (current_isa() == Isa::avx2)
    zip_vectors<32>(x, w, y, n, f);
  else
    zip_vectors<16>(x, w, y, n, f);
}

// x > 0 ? yes : no, lane by lane, for a T or a GCC vector of T.
template <typename V>
inline V where_positive(V x, V yes, V no) {
  return x > V{} ? yes : no;
}

}  // namespace deltaprop
