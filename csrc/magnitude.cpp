// max_abs (magnitude.hpp): the scan compiled for baseline x86-64 and for AVX2 (per_isa.hpp),
// split over threads for large arrays.
#include "deltaprop/magnitude.hpp"

#include "per_isa.hpp"

namespace deltaprop {

namespace {

// fit checks its inputs every epoch, and an MNIST-shaped X (47M floats) took one thread 16 ms
// to scan, 6% of the epoch; two threads take half that. A scanned element costs about what
// eight multiply-adds do (7-20 elements a nanosecond from L2 or beyond, against ~90 multiply-
// adds), so threads_for shares scans from 2^18 elements (~20 µs): the divergence guard of a
// wide-shaped step scans activations and deltas of 256×2048 each.
template <typename T>
double split_scan(const T* p, std::size_t n) {
  constexpr double multiply_adds_per_element = 8;
  return largest_on_threads(threads_for(double(n) * multiply_adds_per_element),
                            [&](std::ptrdiff_t team, std::ptrdiff_t me, double& largest) {
                              const std::size_t begin = n * me / team, end = n * (me + 1) / team;
                              largest =
                                  for_isa<&max_abs_inline<T>, Isa::avx2>(p + begin, end - begin);
                            });
}

}  // namespace

double max_abs(const float* p, std::size_t n) { return split_scan(p, n); }

double max_abs(const double* p, std::size_t n) { return split_scan(p, n); }

}  // namespace deltaprop
