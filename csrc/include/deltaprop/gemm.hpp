// The one GEMM entry point: C = op(A)·op(B), then an epilogue applied to each finished output
// tile while it is still in L1. Training needs three products — A·W (forward), D·Wᵀ (delta)
// and Aᵀ·D (weight gradient) — which are all this call with different strides, so no transpose
// is ever materialised.
#pragma once

#include <cstddef>

#include "deltaprop/activation.hpp"
#include "deltaprop/optimizer.hpp"

namespace deltaprop {

// A strided matrix: element (i, j) is data[i * rs + j * cs].
template <typename T>
struct MatrixView {
  const T* data;
  std::ptrdiff_t rs, cs;
  const T& operator()(std::ptrdiff_t i, std::ptrdiff_t j) const { return data[i * rs + j * cs]; }
};

// Row-major view of an m×n array and of its transpose.
template <typename T>
MatrixView<T> row_major(const T* data, std::ptrdiff_t cols) { return {data, cols, 1}; }
template <typename T>
MatrixView<T> transposed(const T* data, std::ptrdiff_t cols) { return {data, 1, cols}; }

enum class EpilogueKind : int {
  store,            // C = AB
  bias_activation,  // C = g(AB + bias)            forward
  derivative,       // C = AB ⊙ g'(out)            delta, g' from the layer output `out`
  optimizer,        // param -= update(AB)         weight gradient fused with the optimizer
};

// What gemm measures while each finished tile is still in L1, and returns: max |A·B| over every
// product before the epilogue, max |C| over every element the epilogue writes (bias_activation
// and derivative), or nothing (it returns 0).
enum class Measure : int { nothing, products, output };

template <typename T>
struct Epilogue {
  EpilogueKind kind = EpilogueKind::store;
  Activation activation = Activation::identity;
  T alpha = T(0.01);
  const T* bias = nullptr;  // bias_activation: length n, may be null
  const T* out = nullptr;   // derivative: row-major m×n layer output
  // optimizer: row-major m×n parameters and moments; also stores AB into C if keep_gradient.
  T* param = nullptr;
  T* m = nullptr;
  T* v = nullptr;
  OptimizerStep<T> step{};
  bool keep_gradient = false;
  // optimizer: another product reads param across the split by C's columns (a delta product
  // reads W's rows), so the other core may hold the lines the update rewrites (gemm.cpp).
  bool param_read_across = false;
  Measure measure = Measure::nothing;  // products and output: not the optimizer
  // Work that belongs to C's columns but does not read C (a bias's update from B's column sums):
  // called for every column once, in ranges j_begin..j_end, by the thread whose share holds
  // them (thread 0, for all, where threads split C's rows), while other threads may still be
  // computing theirs. It must not throw. with_columns_done sets it.
  using ColumnsDone = void (*)(const void* context, std::ptrdiff_t j_begin, std::ptrdiff_t j_end);
  ColumnsDone columns_done = nullptr;
  const void* columns_context = nullptr;
};

// Has `epilogue` call work(j_begin, j_end) as its columns_done; `work` must outlive the product.
template <typename T, typename Work>
void with_columns_done(Epilogue<T>& epilogue, const Work& work) {
  epilogue.columns_done = [](const void* context, std::ptrdiff_t j_begin, std::ptrdiff_t j_end) {
    (*static_cast<const Work*>(context))(j_begin, j_end);
  };
  epilogue.columns_context = &work;
}

// C (row-major, leading dimension ldc) receives the product. With the optimizer epilogue and
// keep_gradient false, C is scratch for partial sums, needed only when k exceeds the kernel's
// kc (gemm_kernel<T>().kc); it may be null otherwise. Returns what epilogue.measure asks for: a
// magnitude, NaN or infinity where an element measured is not finite; otherwise 0.
// A packed product runs on the threads that `team_work` multiply-adds would get where that is
// more than its own m·n·k: a product that reads, tile for tile, what a larger one of the same
// m×n wrote gets that product's team, and the same split gives each thread its own tiles back.
template <typename T>
double gemm(std::ptrdiff_t m, std::ptrdiff_t n, std::ptrdiff_t k, MatrixView<T> a,
            MatrixView<T> b, T* c, std::ptrdiff_t ldc, const Epilogue<T>& epilogue,
            double team_work = 0);

// Columns j_begin..j_end of the same product, on the calling thread: a team's own share, split
// at multiples of gemm_kernel<T>(n).nr as gemm's own threads split C, so each element gets the
// bits gemm gives it. A product gemm runs unpacked (one row, column or term, or tiny) is one
// share: j_begin 0 computes all of it, any other range nothing.
template <typename T>
double gemm_columns(std::ptrdiff_t m, std::ptrdiff_t n, std::ptrdiff_t k, MatrixView<T> a,
                    MatrixView<T> b, T* c, std::ptrdiff_t ldc, const Epilogue<T>& epilogue,
                    std::ptrdiff_t j_begin, std::ptrdiff_t j_end);

// out = g(z) elementwise (softmax: only the pre-activation), through the same per-ISA loops as
// the forward epilogue; for testing the vectorised exp, sigmoid and tanh.
template <typename T>
void apply_activation(const T* z, T* out, std::ptrdiff_t rows, std::ptrdiff_t cols,
                      Activation activation, T alpha);

}  // namespace deltaprop
