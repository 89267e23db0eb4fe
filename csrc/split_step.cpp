// The training step of a network whose products are each too small to share threads, on two.
//
// A digits-shaped step (64-128-64-10 at batch 32) has eight products of at most 2^18
// multiply-adds, each below what repays a parallel region of its own (threads_for), so every one
// ran on one thread while the other core idled. Here one region holds the whole step: each thread
// takes a share of the rows through forward, output and deltas, which need nothing from the other
// rows; after a barrier the calling thread runs the divergence guard; after another, each thread
// computes a share of every layer's gradient columns and applies the update to them. Every
// element is summed as the one-thread step sums it (the shares split at the kernel's tiles), so
// the weights and the loss are the same bits on any number of threads.
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>

#include "deltaprop/dispatch.hpp"
#include "deltaprop/gemm.hpp"
#include "deltaprop/magnitude.hpp"
#include "deltaprop/network.hpp"
#include "deltaprop/threads.hpp"

namespace deltaprop {

namespace {

// A step of fewer multiply-adds than this (~16 µs on one core) stays there: the region's fork,
// two barriers and join, and the data each core reads from the other, cost a split step 4-8 µs
// with the vCPUs near. A 20-64-64-3 step at batch 16 (3·88k multiply-adds) took 9 µs split
// against 8.2 on one core, a digits-shaped one at batch 16 (3·272k) 21 µs against 19; at batch
// 32 (3·545k), 25 against 33.
constexpr double min_split_step_work = 1 << 20;

// A barrier of the region's team, where it has more than one thread.
inline void team_barrier(std::ptrdiff_t team) {
#ifdef _OPENMP
  if (team > 1) {
#pragma omp barrier
  }
#else
  (void)team;
#endif
}

}  // namespace

template <typename T>
bool Network<T>::split_step_fits(std::size_t rows) const {
  const std::size_t second = rows - first_share_rows(rows);
  // A share of one row, or of a product under 128 multiply-adds, would run gemm's unpacked
  // loops where the batch runs packed ones, which sum in another order.
  if (second < 2) return false;
  double largest = 0, total = 0;
  for (std::size_t l = 0; l < n_layers(); ++l) {
    const double product = double(sizes_[l]) * double(sizes_[l + 1]);
    if (double(second) * product < 128) return false;
    largest = std::max(largest, double(rows) * product);
    total += double(rows) * product;
  }
  // Forward, delta and gradient products: about three times the forward's multiply-adds.
  return 3 * total >= min_split_step_work && threads_for(largest) == 1 &&
         threads_for(std::numeric_limits<double>::infinity()) >= 2;
}

template <typename T>
void Network<T>::rows_share(std::size_t row0, std::size_t rows, std::size_t batch, const T* x,
                            const T* t, double x_largest, double* largest, double& loss_sum) {
  const std::size_t layers = n_layers();
  const T* in = x + row0 * sizes_[0];
  for (std::size_t l = 1; l <= layers; ++l) {
    T* out = a_[l].data() + row0 * sizes_[l];
    const double measured = forward_product(l, in, rows, true, out);
    if (l < layers) largest[2 * l] = measured;  // max|A_l|
    in = out;
  }
  loss_sum = output_rows_from(row0, rows, batch, t, true);
  measure_ends(x, row0, rows, x_largest, largest);
  for (std::size_t l = layers; l >= 2; --l)
    largest[2 * (l - 2) + 1] = delta_product(l, row0, rows, true, 0);  // max|D_{l-1}|
}

template <typename T>
void Network<T>::columns_share(int share, const T* x, std::size_t rows,
                               const OptimizerStep<T>& opt, T* bias_gradient) {
  for (std::size_t l = n_layers(); l >= 1; --l) {
    const auto n_in = static_cast<std::ptrdiff_t>(sizes_[l - 1]);
    const auto n_out = static_cast<std::ptrdiff_t>(sizes_[l]);
    // At a multiple of the kernel's tile width, as gemm's own threads split C's columns.
    const std::ptrdiff_t nr = gemm_kernel<T>(n_out).nr, panels = (n_out + nr - 1) / nr;
    const std::ptrdiff_t split = std::min(n_out, (panels + 1) / 2 * nr);
    const std::ptrdiff_t j0 = share == 0 ? 0 : split, j1 = share == 0 ? split : n_out;
    const T* a_prev = l == 1 ? x : a_[l - 1].data();
    Epilogue<T> ep = update_epilogue(l, opt);
    const auto bias = [&](std::ptrdiff_t b0, std::ptrdiff_t b1) {
      bias_columns(l, rows, &opt, bias_gradient, b0, b1);
    };
    if (bias_) with_columns_done(ep, bias);
    // grad_[l]: the partial sums of a batch deeper than kc (split_step sized it); else unused.
    gemm_columns<T>(n_in, n_out, static_cast<std::ptrdiff_t>(rows), transposed(a_prev, n_in),
                    row_major(d_[l].data(), n_out), grad_[l].data(), n_out, ep, j0, j1);
  }
}

template <typename T>
double Network<T>::split_step(const T* x, const T* t, std::size_t rows, OptimizerStep<T>& opt,
                              double x_largest) {
  const std::size_t layers = n_layers(), first = first_share_rows(rows);
  // Scratch that both threads' shares write, sized here, before the region.
  const std::size_t widest = *std::max_element(sizes_.begin() + 1, sizes_.end());
  // A row of bias gradients a share, each sum at its column's place: the shares go through the
  // layers without waiting for each other, so in a row of both a share's sums for one layer
  // would overwrite those the other is still making for another (ThreadSanitizer saw it).
  T* bias_gradients = bias_ ? reserve(row_gradient_, 2 * widest) : nullptr;
  if (rows > static_cast<std::size_t>(gemm_kernel<T>().kc))
    for (std::size_t l = 1; l <= layers; ++l) reserve(grad_[l], sizes_[l - 1] * sizes_[l]);
  double loss_sums[2] = {0, 0}, loss = 0;
  bool update = false, careful = false;
  std::exception_ptr failed[2];
  on_threads(2, [&](std::ptrdiff_t team, std::ptrdiff_t me) {
    // Shares run where they would on a full team; a team of one (OpenMP may give fewer threads
    // than asked) runs both. What a share throws is caught, so that every thread still meets
    // the barriers, and rethrown after the region.
    auto each_share = [&](const auto& work) {
      for (std::ptrdiff_t s = me; s < 2; s += team) {
        try {
          work(static_cast<int>(s));
        } catch (...) {
          failed[s] = std::current_exception();
        }
      }
    };
    each_share([&](int s) {
      rows_share(s == 0 ? 0 : first, s == 0 ? first : rows - first, rows, x, t, x_largest,
                 share_magnitudes_.data() + s * 2 * layers, loss_sums[s]);
    });
    team_barrier(team);
    if (me == 0 && !failed[0] && !failed[1]) {
      loss = (loss_sums[0] + loss_sums[1]) / static_cast<double>(rows);
      if (std::isfinite(loss)) {
        try {
          for (std::size_t i = 0; i < 2 * layers; ++i)
            step_magnitudes_[i] =
                larger_magnitude(share_magnitudes_[i], share_magnitudes_[2 * layers + i]);
          careful = guard_from_magnitudes(step_magnitudes_.data(), rows, opt);
          begin_step(opt);
          update = true;
        } catch (...) {
          failed[0] = std::current_exception();
        }
      }
    }
    team_barrier(team);
    if (update)
      each_share([&](int s) { columns_share(s, x, rows, opt, bias_gradients + s * widest); });
  });
  for (const auto& f : failed)
    if (f) std::rethrow_exception(f);
  if (!update) return loss;
  return guard_after_update(careful) ? loss : std::numeric_limits<double>::quiet_NaN();
}

// Every member defined here (network.hpp declares the class's instantiations extern).
#define DELTAPROP_SPLIT_STEP(T)                                                                 \
  template bool Network<T>::split_step_fits(std::size_t) const;                                \
  template double Network<T>::split_step(const T*, const T*, std::size_t, OptimizerStep<T>&,   \
                                         double);                                              \
  template void Network<T>::rows_share(std::size_t, std::size_t, std::size_t, const T*,        \
                                       const T*, double, double*, double&);                    \
  template void Network<T>::columns_share(int, const T*, std::size_t, const OptimizerStep<T>&, \
                                          T*);
DELTAPROP_SPLIT_STEP(float)
DELTAPROP_SPLIT_STEP(double)
#undef DELTAPROP_SPLIT_STEP

}  // namespace deltaprop
