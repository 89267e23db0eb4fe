// The largest magnitude in an array: the divergence guard's bound on a step and the native
// module's check that inputs are finite both reduce to it, on every step and every call.
#pragma once

#include <cstddef>

namespace deltaprop {

// max |p[i]| over n elements as a double: infinity or NaN as soon as one element is not finite,
// 0 for n = 0.
double max_abs(const float* p, std::size_t n);
double max_abs(const double* p, std::size_t n);

}  // namespace deltaprop
