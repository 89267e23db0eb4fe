// Σ over rows of a row-major array, per column: the bias gradient Σ_rows D_l.
#pragma once

#include <cstddef>

namespace deltaprop {

// out[j] = Σ_r d[r·ld + j] for n columns, each summed in row order, so every ISA gives the same
// bits (and a share of the columns the bits of all of them: split_step.cpp).
// Compiled for AVX-512, AVX2 and baseline x86-64; runs the copy for the ISA in use (per_isa.hpp).
void column_sums(const float* d, std::size_t rows, std::size_t n, std::size_t ld, float* out);
void column_sums(const double* d, std::size_t rows, std::size_t n, std::size_t ld, double* out);

}  // namespace deltaprop
