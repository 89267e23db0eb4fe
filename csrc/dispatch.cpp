// CPU features -> one kernel table per type. The chain runs from the best ISA down to generic,
// which always exists and always works (BLIS's reference-kernel rule).
#include "deltaprop/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace deltaprop {
namespace {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

bool cpu_supports(Isa isa) {
#if DELTAPROP_X86
  switch (isa) {
    case Isa::avx512:  // every extension its translation units are compiled with (per_isa.hpp)
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma");
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default:
      return true;
  }
#else
  return isa == Isa::generic;
#endif
}

Isa best_isa() {
  for (Isa isa : {Isa::avx512, Isa::avx2})
    if (cpu_supports(isa)) return isa;
  return Isa::generic;
}

}  // namespace

std::atomic<int> detail::isa_in_use{static_cast<int>(best_isa())};

template <>
const KernelTable<float>& gemm_kernel<float>(std::ptrdiff_t columns) {
  switch (current_isa()) {
#if DELTAPROP_X86
    case Isa::avx512: return columns <= 16 ? f32_gemm_8x16_avx512 : f32_gemm_8x32_avx512;
    case Isa::avx2: return f32_gemm_6x16_avx2;
#endif
    default: return f32_gemm_4x8_generic;
  }
}

template <>
const KernelTable<double>& gemm_kernel<double>(std::ptrdiff_t columns) {
  switch (current_isa()) {
#if DELTAPROP_X86
    case Isa::avx512: return columns <= 8 ? f64_gemm_8x8_avx512 : f64_gemm_8x16_avx512;
    case Isa::avx2: return f64_gemm_6x8_avx2;
#endif
    default: return f64_gemm_4x4_generic;
  }
}

std::string isa_in_use() { return isa_name(current_isa()); }

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
    if (cpu_supports(isa)) names.emplace_back(isa_name(isa));
  return names;
}

void select_isa(const std::string& name) {
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (name != isa_name(isa)) continue;
    if (!cpu_supports(isa))
      throw std::invalid_argument("ISA '" + name + "' is not supported by this CPU");
    detail::isa_in_use.store(static_cast<int>(isa));
    return;
  }
  throw std::invalid_argument("unknown ISA '" + name + "'; expected one of generic, avx2, avx512");
}

void select_isa_from_environment() {
  const char* requested = std::getenv("DELTAPROP_ISA");
  if (requested && *requested) select_isa(requested);
}

}  // namespace deltaprop
