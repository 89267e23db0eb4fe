// max_abs (magnitude.hpp) compiled twice, for baseline x86-64 and for AVX2: target_clones picks
// the copy when the module loads.
#include "deltaprop/magnitude.hpp"

namespace deltaprop {

__attribute__((target_clones("avx2", "default"))) double max_abs(const float* p, std::size_t n) {
  return max_abs_inline(p, n);
}

__attribute__((target_clones("avx2", "default"))) double max_abs(const double* p, std::size_t n) {
  return max_abs_inline(p, n);
}

}  // namespace deltaprop
