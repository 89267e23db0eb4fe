// Optimizer updates applied to a run of parameters, given their gradient. Called from the
// gradient GEMM's epilogue on each output tile (so the gradient is consumed from L1, never
// written to memory and read back) and from the bias update.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

#include "deltaprop/elementwise.hpp"

namespace deltaprop {

enum class OptimizerKind : int { sgd, adam };

// One step's hyper-parameters. Adam's bias corrections 1-β^t are folded into two constants
// once per step.
template <typename T>
struct OptimizerStep {
  OptimizerKind kind = OptimizerKind::sgd;
  T lr = T(0.01);
  T momentum = 0;
  bool nesterov = false;
  T weight_decay = 0;
  T beta1 = T(0.9), beta2 = T(0.999), eps = T(1e-8);
  T step_size = T(0.01);            // lr / (1 - beta1^t)
  T inverse_root_correction2 = 1;   // 1 / sqrt(1 - beta2^t)
  // 1 − β and 1 − β^t from the double β the user gave, each rounded once to T: in float32,
  // 1 − float(0.999) is 1.3e-5 (relative) away from 0.001, a bias in every second moment.
  T one_minus_beta1 = T(0.1), one_minus_beta2 = T(0.001);
  double beta1_exact = 0.9, beta2_exact = 0.999;

  bool uses_first_moment() const { return kind == OptimizerKind::adam || momentum != T(0); }
  bool uses_second_moment() const { return kind == OptimizerKind::adam; }
};

// A moment below the smallest normal number is stored as 0, the value it decays toward. The
// moments of a parameter whose gradient has stopped (a dead ReLU unit) shrink by β every step,
// and as subnormals they would cost every instruction that reads them a microcode assist of a
// hundred cycles or more on Intel cores, for the whole vector: an MNIST-shaped Adam fit held 142k
// subnormal moments of 235k and trained at 40k samples/s, against 68k with them stored as 0
// (1 thread, Intel Xeon). The reference backend stores them the same way.
template <typename T>
inline T normal_or_zero(T x) {
  return std::fabs(x) < std::numeric_limits<T>::min() ? T(0) : x;
}

// p -= update(g) for a rows×cols block of parameters: row r of p, m and v (the optimizer's
// moments, null when unused) starts at r·ld, row r of the gradient at r·ld_grad. `decay` is false
// for biases: weight decay applies to weights only.
//
// Every field of s the loops read is copied to a local first: the parameters are T, and so are
// s's fields, so as far as GCC knows each store to p might change s.lr, and it kept the loops
// scalar, reloading s.lr for every parameter: the plain SGD update of the GEMM epilogue, which
// every batched fit runs, took 3 instructions a parameter, 7% of a digits-shaped fit's.
// The optimizer's kind is tested once per block: the epilogue updates a tile of up to 16-wide
// rows, and tests of kind, momentum and null moments before each row, with a test of the
// parameters against the gradient for overlap, cost it as many instructions as the arithmetic.
// Plain SGD's rows are explicit vectors (elementwise.hpp); Adam's and momentum's loops are
// vectorised by GCC, told by `restrict` that parameters, moments and gradient never overlap.
// `vector_bytes` as for zip_row.
template <std::size_t vector_bytes = 0, typename T>
inline void apply_update_rows(const OptimizerStep<T>& s, T* p, std::ptrdiff_t ld, const T* grad,
                              std::ptrdiff_t ld_grad, T* m, T* v, std::ptrdiff_t rows,
                              std::size_t n, bool decay) {
  const T wd = decay ? s.weight_decay : T(0), lr = s.lr;
  auto for_rows = [&](auto row) {
    auto moment_row = [&](T* moment, std::ptrdiff_t r) -> T* {
      return moment ? moment + r * ld : nullptr;
    };
    for (std::ptrdiff_t r = 0; r < rows; ++r)
      row(p + r * ld, grad + r * ld_grad, moment_row(m, r), moment_row(v, r));
  };
  if (s.kind == OptimizerKind::adam) {
    const T b1 = s.beta1, b2 = s.beta2, r1 = s.one_minus_beta1, r2 = s.one_minus_beta2;
    const T step_size = s.step_size, correction2 = s.inverse_root_correction2, eps = s.eps;
    // lr·m̂/(√v̂ + ε) with m̂ = m/(1-β1^t), v̂ = v/(1-β2^t), as PyTorch computes it: one
    // division and one square root a parameter, where m̂, v̂ and the quotient took three
    // divisions (each a slow instruction: an MNIST-shaped Adam step spent more time in its
    // update than in its forward pass). Equal up to rounding.
    for_rows([=](T* __restrict p_row, const T* __restrict g_row, T* __restrict m_row,
                 T* __restrict v_row) {
      for (std::size_t j = 0; j < n; ++j) {
        const T g = g_row[j] + wd * p_row[j];
        m_row[j] = normal_or_zero(b1 * m_row[j] + r1 * g);
        v_row[j] = normal_or_zero(b2 * v_row[j] + r2 * g * g);
        p_row[j] -= step_size * m_row[j] / (std::sqrt(v_row[j]) * correction2 + eps);
      }
    });
  } else if (s.momentum != T(0)) {
    const T mu = s.momentum;
    const bool nesterov = s.nesterov;
    for_rows([=](T* __restrict p_row, const T* __restrict g_row, T* __restrict m_row, T*) {
      for (std::size_t j = 0; j < n; ++j) {
        const T g = g_row[j] + wd * p_row[j];
        m_row[j] = normal_or_zero(mu * m_row[j] + g);
        p_row[j] -= lr * (nesterov ? g + mu * m_row[j] : m_row[j]);
      }
    });
  } else {
    for (std::ptrdiff_t r = 0; r < rows; ++r)
      zip_row<vector_bytes>(p + r * ld, grad + r * ld_grad, p + r * ld, n,
                            [=](auto pj, auto gj) { return pj - lr * (gj + wd * pj); });
  }
}

// p -= update(g) for n parameters in a row.
template <typename T>
inline void apply_update(const OptimizerStep<T>& s, T* p, const T* grad, T* m, T* v,
                         std::size_t n, bool decay) {
  apply_update_rows(s, p, 0, grad, 0, m, v, 1, n, decay);
}

}  // namespace deltaprop
