// The output pass over a batch (loss.hpp's output_row on every row), one compiled copy per ISA.
//
// Softmax with cross-entropy goes eight rows at a time, one row per vector lane: a row's work is
// a chain (its max, then its exponentials' sum, then a log1p) that a row-at-a-time loop waits
// out, 60 ns a row of 10 classes, a sixth of a digits-shaped step's time outside the GEMMs. The
// lanes run output_row's operations in its order, so every row's results are bitwise those of
// output_row in the same copy, which takes the rows that do not fill a vector.
#include "deltaprop/buffer.hpp"
#include "deltaprop/loss.hpp"
#include "per_isa.hpp"

namespace deltaprop {

namespace {

constexpr std::size_t lanes = 8;

template <typename S>
struct Vector {
  typedef S type __attribute__((vector_size(lanes * sizeof(S))));
};

// Rows [0, 8) of z (and t, d): output_row for softmax and cross-entropy, with the rows
// transposed into `columns` (n vectors of z, then n of t) so each row is a lane. Returns `sum`
// plus the rows' losses, added in row order.
template <typename T>
double softmax_cross_entropy_lanes(T* z, const T* t, T* d, std::size_t n, T scale, T* columns,
                                   double sum) {
  using V = typename Vector<T>::type;
  using D = typename Vector<double>::type;
  using Index = typename detail::Lanes<V>::Bits;
  using Scalar = typename ExpConstants<T>::Bits;
  auto load = [](const T* p) {
    V v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
  };
  auto store = [](T* p, V v) { __builtin_memcpy(p, &v, sizeof v); };
  auto widen = [](V v) { return __builtin_convertvector(v, D); };
  T* zc = columns;
  T* tc = columns + n * lanes;
  for (std::size_t r = 0; r < lanes; ++r)
    for (std::size_t j = 0; j < n; ++j) zc[j * lanes + r] = z[r * n + j];
  if (t)
    for (std::size_t r = 0; r < lanes; ++r)
      for (std::size_t j = 0; j < n; ++j) tc[j * lanes + r] = t[r * n + j];

  V m = load(zc);  // each row's first largest logit, and its column
  Index top = Index{};
  for (std::size_t j = 1; j < n; ++j) {
    const V c = load(zc + j * lanes);
    const Index larger = c > m;
    m = larger ? c : m;
    top = larger ? Index{} + Scalar(j) : top;
  }
  D e = D{}, mass = D{}, rest = D{};
  if (t)
    for (std::size_t j = 0; j < n; ++j) {
      const V tj = load(tc + j * lanes);
      e += widen(tj) * widen(m - load(zc + j * lanes));
      mass += widen(tj);
    }
  for (std::size_t j = 0; j < n; ++j) {
    const V ez = fast_exp(load(zc + j * lanes) - m);
    store(zc + j * lanes, ez);
    const auto is_top = __builtin_convertvector(top == Scalar(j), typename detail::Lanes<D>::Bits);
    rest += is_top ? D{} : widen(ez);
  }
  e += mass * fast_log1p(rest);
  const V inv = T(1) / __builtin_convertvector(1.0 + rest, V);
  for (std::size_t r = 0; r < lanes; ++r) {
    for (std::size_t j = 0; j < n; ++j) z[r * n + j] = zc[j * lanes + r] * inv[r];
    if (t && d)
      for (std::size_t j = 0; j < n; ++j) d[r * n + j] = (z[r * n + j] - t[r * n + j]) * scale;
    sum += e[r];
  }
  return sum;
}

template <typename T>
double output_rows_body(Loss loss, Activation act, T alpha, T* z, const T* t, T* d,
                        std::size_t rows, std::size_t n, T scale) {
  thread_local Buffer<T> columns_buffer;
  double sum = 0.0;
  std::size_t r = 0;
  if (loss == Loss::cross_entropy && rows >= lanes) {
    T* columns = reserve(columns_buffer, 2 * n * lanes);
    for (; r + lanes <= rows; r += lanes)
      sum = softmax_cross_entropy_lanes(z + r * n, t ? t + r * n : nullptr, d ? d + r * n : nullptr,
                                        n, scale, columns, sum);
  }
  for (; r < rows; ++r)
    sum += output_row(loss, act, alpha, z + r * n, t ? t + r * n : nullptr, d ? d + r * n : nullptr,
                      n, scale);
  return sum;
}

}  // namespace

template <typename T>
double output_rows(Loss loss, Activation act, T alpha, T* z, const T* t, T* d, std::size_t rows,
                   std::size_t n, T scale) {
  return for_isa<&output_rows_body<T>>(loss, act, alpha, z, t, d, rows, n, scale);
}

template double output_rows<float>(Loss, Activation, float, float*, const float*, float*,
                                   std::size_t, std::size_t, float);
template double output_rows<double>(Loss, Activation, double, double*, const double*, double*,
                                    std::size_t, std::size_t, double);

}  // namespace deltaprop
