// Optimizer updates applied to a run of parameters, given their gradient. Called from the
// gradient GEMM's epilogue on each output tile (so the gradient is consumed from L1, never
// written to memory and read back) and from the bias update.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

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

// p -= update(g) for n parameters; m and v are the optimizer's moments for these parameters
// (null when unused). `decay` is false for biases: weight decay applies to weights only.
//
// Every field of s the loops read is copied to a local first: the parameters are T, and so are
// s's fields, so as far as GCC knows each store to p might change s.lr, and it kept the loops
// scalar, reloading s.lr for every parameter: the plain SGD update of the GEMM epilogue, which
// every batched fit runs, took 3 instructions a parameter, 7% of a digits-shaped fit's (2 now,
// vectorised behind a test of p against grad for overlap).
template <typename T>
inline void apply_update(const OptimizerStep<T>& s, T* p, const T* grad, T* m, T* v,
                         std::size_t n, bool decay) {
  const T wd = decay ? s.weight_decay : T(0), lr = s.lr;
  if (s.kind == OptimizerKind::adam) {
    const T b1 = s.beta1, b2 = s.beta2, r1 = s.one_minus_beta1, r2 = s.one_minus_beta2;
    const T step_size = s.step_size, correction2 = s.inverse_root_correction2, eps = s.eps;
    // lr·m̂/(√v̂ + ε) with m̂ = m/(1-β1^t), v̂ = v/(1-β2^t), as PyTorch computes it: one
    // division and one square root a parameter, where m̂, v̂ and the quotient took three
    // divisions (each a slow instruction: an MNIST-shaped Adam step spent more time in its
    // update than in its forward pass). Equal up to rounding.
    for (std::size_t j = 0; j < n; ++j) {
      const T g = grad[j] + wd * p[j];
      m[j] = normal_or_zero(b1 * m[j] + r1 * g);
      v[j] = normal_or_zero(b2 * v[j] + r2 * g * g);
      p[j] -= step_size * m[j] / (std::sqrt(v[j]) * correction2 + eps);
    }
  } else if (s.momentum != T(0)) {
    const T mu = s.momentum;
    const bool nesterov = s.nesterov;
    for (std::size_t j = 0; j < n; ++j) {
      const T g = grad[j] + wd * p[j];
      m[j] = normal_or_zero(mu * m[j] + g);
      p[j] -= lr * (nesterov ? g + mu * m[j] : m[j]);
    }
  } else {
    for (std::size_t j = 0; j < n; ++j) p[j] -= lr * (grad[j] + wd * p[j]);
  }
}

}  // namespace deltaprop
