// Runtime ISA dispatch: CPU features -> one kernel table per type, chosen once at import.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "deltaprop/kernels.hpp"

namespace deltaprop {

// The kernel table in use for T, for a product `columns` wide. On AVX-512 a C at most one vector
// wide (10 classes in float) gets the tile of one vector a row (8×16 float, 8×8 double) instead
// of the two-vector one, more than half of whose lanes it would leave empty: 128×128 · 128×10
// took 6.6 µs against the 8.2 of the AVX2 6×16 tile that such products had before (1 thread).
template <typename T>
const KernelTable<T>& gemm_kernel(std::ptrdiff_t columns = PTRDIFF_MAX);

// "generic", "avx2", "avx512": the ISA in use, the ones this CPU runs, and a switch between
// them. DELTAPROP_ISA picks one at import (like BLIS_ARCH_TYPE); tests call select_isa to
// cross-check every path the machine has. Not meant to be called while kernels run.
std::string isa_in_use();
// The ISA in use as a number: an inline load, cheap enough to ask for every row an online step
// activates or updates (as an out-of-line call it also cost every vector register the caller
// held).
enum class Isa : int { generic, avx2, avx512 };
namespace detail {
extern std::atomic<int> isa_in_use;
}
inline Isa current_isa() {
  return static_cast<Isa>(detail::isa_in_use.load(std::memory_order_relaxed));
}
std::vector<std::string> supported_isas();
void select_isa(const std::string& name);
void select_isa_from_environment();

}  // namespace deltaprop
