// The online step of networks no wider than one 32-byte vector (8 floats or 4 doubles per
// layer), such as the reference posts' 2-3-1: every layer's activations, deltas, weight rows and
// columns are whole vectors, so a sample runs as a few dozen vector instructions with no loop
// over a layer's units and no round trip of a short row through memory.
//
// The matrix-vector loops of online.cpp spend most of a 2-3-1 sample on loop control and
// scalar code for rows of two or three elements. Here the forward product is a sum of
// broadcast activations times W's rows, and the backward product a sum of broadcast deltas
// times W's columns: the layer's weights are kept both ways, for the whole epoch, and each
// update writes the same value into both (the same products, in the same order). Lanes past a
// layer's width are zero in the weights and kept zero in activations and deltas.
//
// It covers plain SGD (momentum 0, any weight decay), mse or binary cross-entropy and
// elementwise activations; fit_epoch takes the general step for everything else. The arithmetic
// is online.cpp's, operation for operation and in the same order: on the baseline build the two
// give bitwise equal weights, and where the compiler fuses a multiply-add differently they differ
// in the last bit. The 2-3-1 network trains 1.4× as fast in order and 1.2× shuffled (8.6 → 12.1M
// and 7.2 → 8.8M samples/s, interleaved runs, Intel Xeon with AVX-512).
//
// A 2-3-1 step is a chain of dependent operations (forward, two sigmoids, deltas, the update the
// next sample's forward reads) some 200 cycles long, and the whole epoch runs in one call
// (tiny_run) so that nothing else stands in that chain: a call per sample through the ISA
// dispatch, a guard that gathered each vector's magnitude lane by lane and then decided whether
// the update needed a snapshot, all cost as much again. The update now tests the new vectors for
// finiteness with vector arithmetic (the same outcome: a step is undone exactly when it would
// leave a non-finite weight). 2-3-1 shuffled: 11.1 → 13.0M samples/s, in order 12.9 → 14.9M
// (same weights, bit for bit).
//
// Work off that chain still costs: a sample's instructions outnumber the out-of-order window,
// so they delay the next sample's start. Two copies of the weights, read from one and written to
// the other, keep the old weights with no copy (each step had stored every old vector), the probe
// reads one of each layer's two forms, and inputs and targets are whole-vector loads (loops to
// their widths had compiled to two calls of memcpy a sample): the 2-3-1 fit, on a 2-core AMD
// EPYC, 8 interleaved rounds, 12.2 → 13.4M samples/s shuffled and 12.7 → 14.5M in order. The
// first layer's columns, which only a delta of the inputs would read, are no longer updated:
// 3 of its 11 vectors; the best of each round's repeats was faster in 15 of 18 rounds in order
// and 13 of 18 shuffled (2-8%).
//
// The path from one sample to the next then still passed through memory four times: a layer's
// activations and its D were stored whole and read back a lane at a time (a[i] with i known only
// at run time), the first layer's D was stored and reloaded by the update, and the next sample's
// first product reloaded the weights the update had just stored (~8 cycles each on Zen 2, where a
// shuffle in registers takes ~4). The loops over a vector's lanes are now unrolled (the lane of
// each copy a constant), activations and D are handed from layer to layer in registers, each
// layer is updated as soon as its D is known, and the first layer's update forms the next
// sample's first product from the weights it has just written, in `product`'s order (the same
// bits). 2-core AMD EPYC (Zen 2), paired rounds, same weights bit for bit: 2-3-1 shuffled +8.6%
// (8 of 8), in order +8.3% (5 of 6); float64 2-3-1 +10%, float32 8-8-8-4 tanh +6.5%, float64
// 4-4-4-4-4-1 relu +40% (4 of 4 each). The update's factors are then passed as they are, a
// scalar a_i or d_j times a vector, for GCC built a vector from a lane in memory (s − 0, meant
// to broadcast it) with eight inserts: 2-3-1 a further +7.9% shuffled, +6.4% in order, 8-8-8-4
// +20% (465 instructions a sample, from 528). Not kept: the layer count a compile-time 2 for
// the 2-3-1 network (0.95); the update as (w − lr·wd·w) − (lr·x)·y, one multiply-add on the path
// (0.986); the next sample's inputs loaded at the top of the step (0.98).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "deltaprop/network.hpp"
#include "deltaprop/prefetch.hpp"
#include "per_isa.hpp"

namespace deltaprop {

template <typename T>
bool Network<T>::tiny_fits(std::size_t batch_size, const OptimizerStep<T>& opt) const {
  if (batch_size != 1 || opt.kind != OptimizerKind::sgd || opt.momentum != T(0) ||
      loss_ == Loss::cross_entropy || n_layers() > tiny_max_layers)
    return false;
  for (std::size_t width : sizes_)
    if (width > tiny_lanes) return false;
  for (Activation g : activations_)
    if (g == Activation::softmax) return false;
  return true;
}

template <typename T>
void Network<T>::tiny_load() {
  constexpr std::size_t lanes = tiny_lanes;
  tiny_at_.assign(n_layers() + 1, 0);
  for (std::size_t l = 0; l < n_layers(); ++l)
    tiny_at_[l + 1] = tiny_at_[l] + (sizes_[l] + sizes_[l + 1] + 1) * lanes;
  tiny_.assign(2 * tiny_at_.back(), T(0));  // two copies: the step reads one and writes the other
  for (std::size_t l = 0; l < n_layers(); ++l) {
    const std::size_t n_in = sizes_[l], n_out = sizes_[l + 1];
    T* rows = tiny_.data() + tiny_at_[l];
    T* columns = rows + n_in * lanes;
    for (std::size_t i = 0; i < n_in; ++i)
      for (std::size_t j = 0; j < n_out; ++j) {
        rows[i * lanes + j] = weights[l][i * n_out + j];
        if (l > 0) columns[j * lanes + i] = weights[l][i * n_out + j];  // the first's: unused
      }
    if (bias_)
      for (std::size_t j = 0; j < n_out; ++j) columns[n_out * lanes + j] = biases[l][j];
  }
}

template <typename T>
void Network<T>::tiny_store() {
  constexpr std::size_t lanes = tiny_lanes;
  weights_changed();
  for (std::size_t l = 0; l < n_layers(); ++l) {
    const std::size_t n_in = sizes_[l], n_out = sizes_[l + 1];
    const T* rows = tiny_.data() + tiny_at_[l];
    for (std::size_t i = 0; i < n_in; ++i)
      for (std::size_t j = 0; j < n_out; ++j) weights[l][i * n_out + j] = rows[i * lanes + j];
    if (bias_)
      for (std::size_t j = 0; j < n_out; ++j) biases[l][j] = rows[(n_in + n_out) * lanes + j];
  }
}

namespace {

// g(z), lane by lane, as activate_row computes it.
template <typename T, typename V>
inline V tiny_activate(Activation g, T alpha, V z) {
  switch (g) {
    case Activation::sigmoid: return fast_sigmoid(z);
    case Activation::tanh: return fast_tanh(z);
    case Activation::relu: return z > T(0) ? z : T(0);
    case Activation::leaky_relu: return z > T(0) ? z : alpha * z;
    default: return z;  // identity (softmax never reaches here)
  }
}

// x · g'(a), lane by lane, as multiply_derivative_row computes it.
template <typename T, typename V>
inline V tiny_derivative(Activation g, T alpha, V x, V a) {
  switch (g) {
    case Activation::sigmoid: return x * (a * (T(1) - a));
    case Activation::tanh: return x * (T(1) - a * a);
    case Activation::relu: return a > T(0) ? x : T(0);
    case Activation::leaky_relu: return a > T(0) ? x : alpha * x;
    default: return x;
  }
}

// w − lr·(x·y + wd·w): apply_update's plain SGD with the gradient x·y. W's rows take x = a_i
// (a scalar, in all lanes), y = D; its columns take x = A, y = d_j: the same product in each
// lane.
template <typename T, typename V, typename X, typename Y>
inline V tiny_sgd(V w, X x, Y y, T lr, T wd) {
  return w - lr * (x * y + wd * w);
}

}  // namespace

template <typename T>
template <Activation every>
void Network<T>::tiny_run_body(const T* x, const T* t, std::size_t rows, const std::int64_t* order,
                               std::size_t end, double share, OptimizerStep<T> opt,
                               EpochResult& result) {
  typedef T V __attribute__((vector_size(32)));
  typedef std::int64_t Words __attribute__((vector_size(32)));  // V's bits, read as 4 words
  constexpr std::size_t lanes = tiny_lanes;
  const std::size_t L = n_layers(), n_inputs = sizes_[0], n = sizes_[L];
  // Each step reads the weights from `now` and writes its update to `next`, then the two swap:
  // the old weights stay in place until the new ones are known to be finite, with no copy.
  T* now = tiny_.data();
  T* next = now + tiny_at_.back();
  auto vector_at = [&](std::size_t at) {
    V v;
    __builtin_memcpy(&v, now + at, sizeof(V));
    return v;
  };
  auto lanes_below = [](std::size_t count) {  // lane k < count: true
    V index;
    for (std::size_t k = 0; k < lanes; ++k) index[k] = T(k);
    return index < T(count);
  };
  using Mask = decltype(V{} < V{});
  Mask width_lanes[tiny_max_layers + 1];  // lanes below each layer's width
  for (std::size_t l = 0; l <= L; ++l) width_lanes[l] = lanes_below(sizes_[l]);
  // Row r of a rows×width array as a vector, zero past the row: one whole-vector load (and a
  // select) wherever the vector ends inside the array, lane by lane only in its last rows. A
  // loop to `width` compiled to a call of memcpy, twice a sample (an input and a target).
  auto row_vector = [&](const T* array, std::size_t width, std::size_t r, Mask in_row) {
    const T* row = array + r * width;
    V v{};
    if (r * width + lanes <= rows * width) {
      __builtin_memcpy(&v, row, sizeof(V));
      return in_row ? v : T(0);
    }
    for (std::size_t k = 0; k < width; ++k) v[k] = row[k];
    return v;
  };
  const T lr = opt.lr, wd = opt.weight_decay;
  auto activation = [&](std::size_t l) {  // layer l's (from 1)
    if constexpr (every == Activation::softmax)
      return activations_[l - 1];
    else
      return every;
  };
  // Z = b + Σ_i a[i] W[i, :] for the layer at `at` of n_in inputs and n_out units. Its loop, like
  // the other loops over a vector's lanes below, is unrolled so that a[i] is a lane picked out
  // by a shuffle in registers, not a store of the vector and a load of one lane (~4 cycles
  // against ~8 on the path each sample waits on).
  auto product = [&](std::size_t at, std::size_t n_in, std::size_t n_out, V a) {
    V z = vector_at(at + (n_in + n_out) * lanes);
#pragma GCC unroll 8
    for (std::size_t i = 0; i < lanes; ++i) {
      if (i == n_in) break;
      z += a[i] * vector_at(at + i * lanes);
    }
    return z;
  };
  // The inputs and the first layer's Z of the sample at hand, where the step before read the
  // one and computed the other from the weights it wrote, while they were still in registers.
  bool carried = false;
  V inputs{}, first_z{};

  for (std::size_t s = result.samples; s < end; ++s) {
    const std::size_t sample = order ? static_cast<std::size_t>(order[s]) : s;
    if (order && s + online_prefetch_ahead < end) {
      // A row is read as a whole vector (row_vector), which reaches past a short row and, for
      // rows near the end of a cache line, into the next line: its lines are asked for, not
      // just the row's. 2-3-1 shuffled: 2-4% faster, in 11 of 12 rounds (twice).
      const auto ahead = static_cast<std::size_t>(order[s + online_prefetch_ahead]);
      for (const T* row : {x + ahead * n_inputs, t + ahead * n}) {
        const auto first = reinterpret_cast<std::uintptr_t>(row);
        __builtin_prefetch(reinterpret_cast<const void*>(first));
        __builtin_prefetch(reinterpret_cast<const void*>(first + sizeof(V) - 1));
      }
    }
    const T* ts = t + sample * n;

    // The forward pass: each layer's activations handed to the next in `a`, and kept in `act`
    // for the updates.
    V act[tiny_max_layers + 1];
    V a = act[0] = carried ? inputs : row_vector(x, n_inputs, sample, width_lanes[0]);
    V z = carried ? first_z : product(tiny_at_[0], n_inputs, sizes_[1], a);
    for (std::size_t l = 1; l <= L; ++l) {
      if (l > 1) z = product(tiny_at_[l - 1], sizes_[l - 1], sizes_[l], a);
      if (l < L) act[l] = a = width_lanes[l] ? tiny_activate(activation(l), alpha_, z) : T(0);
    }

    // The output layer, its loss and D_L, as output_row computes them for one row (scale 1).
    const V target = row_vector(t, n, sample, width_lanes[L]);
    double loss = 0.0;
    V d;
    if (loss_ == Loss::mse) {
      act[L] = width_lanes[L] ? tiny_activate(activation(L), alpha_, z) : T(0);
      for (std::size_t j = 0; j < n; ++j) {
        const double r = double(act[L][j]) - double(ts[j]);
        loss += 0.5 * r * r;
      }
      d = tiny_derivative(activation(L), alpha_, (act[L] - target) * T(1), act[L]);
    } else {  // binary cross-entropy: max(z,0) - t z + log(1 + exp(-|z|)) on σ(z)
      for (std::size_t j = 0; j < n; ++j) {
        const double zj = z[j];
        loss += std::max(zj, 0.0) - double(ts[j]) * zj + std::log1p(std::exp(-std::fabs(zj)));
      }
      act[L] = width_lanes[L] ? fast_sigmoid(z) : T(0);
      d = (act[L] - target) * T(1);
    }
    if (!std::isfinite(loss)) {
      result.diverged = true;
      result.batch = s;
      break;
    }

    // The step is kept (now and next swap) only if every new weight is finite (x·0 is 0 for
    // finite x, NaN otherwise): a step that overflows is undone. A layer's rows and columns hold
    // the same values, so the probe reads whichever of the two has fewer vectors (the rows of
    // the first layer, which keeps no columns).
    const std::int64_t step_before = step;
    const int kind_before = state_kind;
    // Once this optimizer's state is in place, plain SGD's begin_step only counts the step.
    if (state_kind == static_cast<int>(opt.kind))
      ++step;
    else
      begin_step(opt);
    V probe{};
    auto update = [&](std::size_t at, auto x_factor, auto y_factor, T decay, bool probed) {
      const V updated = tiny_sgd(vector_at(at), x_factor, y_factor, lr, decay);
      __builtin_memcpy(next + at, &updated, sizeof(V));
      if (probed) probe += updated * T(0);
      return updated;
    };
    // Layer l's update from its D (d), which the backward pass hands down in registers: the
    // bias (passed to `bias(b)`, zero for a network without), the rows (each passed to
    // `row(i, W[i, :])`) and, past the first layer, the columns.
    auto ignore = [](auto&&...) {};  // for update_layer's bias or rows, where unused
    auto update_layer = [&](std::size_t l, V d, auto&& bias, auto&& row) {
      const std::size_t n_in = sizes_[l - 1], n_out = sizes_[l], at = tiny_at_[l - 1];
      // The first layer's columns would only serve a delta of the inputs: not kept.
      const bool columns = l > 1, probe_rows = !columns || n_in <= n_out;
      bias(bias_ ? update(at + (n_in + n_out) * lanes, d, T(1), T(0), true) : V{});
#pragma GCC unroll 8
      for (std::size_t i = 0; i < lanes; ++i) {
        if (i == n_in) break;
        row(i, update(at + i * lanes, act[l - 1][i], d, wd, probe_rows));
      }
      for (std::size_t j = 0; columns && j < n_out; ++j)
        update(at + (n_in + j) * lanes, act[l - 1], d[j], wd, !probe_rows);
    };
    // D_{l-1} = (Σ_j D_l[j] W_l[:, j]) ⊙ g'(A_{l-1}) from the weights before the step (in `now`),
    // then layer l's update.
    for (std::size_t l = L; l >= 2; --l) {
      const std::size_t columns = tiny_at_[l - 1] + sizes_[l - 1] * lanes, n_out = sizes_[l];
      V back{};
#pragma GCC unroll 8
      for (std::size_t j = 0; j < lanes; ++j) {
        if (j == n_out) break;
        back += d[j] * vector_at(columns + j * lanes);
      }
      update_layer(l, d, ignore, ignore);
      d = tiny_derivative(activation(l - 1), alpha_, back, act[l - 1]);
    }
    // The first layer's update, and with its new weights the next sample's first product, in
    // the order `product` takes: its first layer then waits on no store and load of its weights.
    carried = s + 1 < end;
    if (carried) {
      const std::size_t following = order ? static_cast<std::size_t>(order[s + 1]) : s + 1;
      inputs = row_vector(x, n_inputs, following, width_lanes[0]);
      update_layer(1, d, [&](V b) { first_z = b; },
                   [&](std::size_t i, V w) { first_z += inputs[i] * w; });
    } else {
      update_layer(1, d, ignore, ignore);
    }
    // One compare of the whole vector (NaN lanes compare unequal too), not a test per lane.
    const Words nonzero = (Words)(probe != T(0));
    if (nonzero[0] | nonzero[1] | nonzero[2] | nonzero[3]) {
      step = step_before;
      state_kind = kind_before;
      result.diverged = true;
      result.batch = s;
      break;
    }
    std::swap(now, next);
    result.loss_mean += loss * share;
    ++result.samples;
  }
  // Between calls, and for tiny_store, the weights are the first copy.
  if (now != tiny_.data()) std::copy(now, now + tiny_at_.back(), tiny_.data());
}

// The step works on 32-byte vectors, which AVX2 has whole: an AVX-512 CPU runs the AVX2 copy.
// Its AVX-512 copy (the same source, with mask registers for the selects and EVEX forms) trained
// the 2-3-1 network 5–10% slower shuffled and no faster in order (Intel Xeon, interleaved runs).
//
// A network of sigmoids or of tanhs throughout takes a copy compiled for that activation: read
// at run time, it was a switch in every layer, and within its branch exp's constants were built
// again at each sample. 2-3-1 (sigmoids) on the Zen 2 EPYC, paired rounds: +5.9% shuffled (6 of
// 6), +4.8% in order (6 of 6); with tanhs, 72 → 70 ns a sample in order. ReLU, leaky ReLU and
// identity are a select or nothing, with no constants to keep; mixed networks take the general
// copy.
template <typename T>
void Network<T>::tiny_run(const T* x, const T* t, std::size_t rows, const std::int64_t* order,
                          std::size_t end, double share, const OptimizerStep<T>& opt,
                          EpochResult& result) {
  auto run = [&](auto every) {
    for_isa<&Network<T>::template tiny_run_body<decltype(every)::value>, Isa::avx2>(
        *this, x, t, rows, order, end, share, opt, result);
  };
  const Activation first = activations_.front();
  const bool uniform = std::all_of(activations_.begin(), activations_.end(),
                                   [first](Activation g) { return g == first; });
  if (uniform && first == Activation::sigmoid)
    run(std::integral_constant<Activation, Activation::sigmoid>{});
  else if (uniform && first == Activation::tanh)
    run(std::integral_constant<Activation, Activation::tanh>{});
  else
    run(std::integral_constant<Activation, Activation::softmax>{});
}

#define DELTAPROP_TINY_MEMBERS(T)                                                                \
  template bool Network<T>::tiny_fits(std::size_t, const OptimizerStep<T>&) const;               \
  template void Network<T>::tiny_load();                                                       \
  template void Network<T>::tiny_store();                                                      \
  template void Network<T>::tiny_run(const T*, const T*, std::size_t, const std::int64_t*,      \
                                     std::size_t, double, const OptimizerStep<T>&, EpochResult&);
DELTAPROP_TINY_MEMBERS(float)
DELTAPROP_TINY_MEMBERS(double)
#undef DELTAPROP_TINY_MEMBERS

}  // namespace deltaprop
