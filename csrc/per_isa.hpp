// One compiled copy of a function per ISA, and the call through the copy for the ISA in use.
// `flatten` inlines the whole function, and with it every loop, into a wrapper compiled for that
// target, without a wide-ISA copy of any shared inline function that the linker could hand to
// baseline code. Used by the online steps (online.cpp, online_tiny.cpp), the output pass
// (output.cpp), the column sums and the magnitude scan; the GEMM's element loops
// (gemm/element_loops.hpp) have their own table of copies. Not target_clones: its resolver runs
// while the module is being relocated, and in the ThreadSanitizer build (clang 14, .ci/races) it
// handed the AVX-512 copy to an AMD EPYC without AVX-512 (SIGILL); it also ignored DELTAPROP_ISA.
#pragma once

#include <type_traits>
#include <utility>

#include "deltaprop/dispatch.hpp"

namespace deltaprop {

// f(args...), or (first.*f)(rest...) for a member function: a direct call, which `flatten`
// inlines (through std::invoke it stayed a call, to a body compiled for the baseline).
template <auto f, typename First, typename... Rest>
inline decltype(auto) call(First&& first, Rest&&... rest) {
  if constexpr (std::is_member_function_pointer_v<decltype(f)>)
    return (std::forward<First>(first).*f)(std::forward<Rest>(rest)...);
  else
    return f(std::forward<First>(first), std::forward<Rest>(rest)...);
}

template <auto f, typename... Args>
decltype(auto) in_generic(Args&&... args) {
  return call<f>(std::forward<Args>(args)...);
}

#if DELTAPROP_X86
template <auto f, typename... Args>
__attribute__((target("avx2,fma"), flatten)) decltype(auto) in_avx2(Args&&... args) {
  return call<f>(std::forward<Args>(args)...);
}

template <auto f, typename... Args>
__attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"), flatten)) decltype(auto) in_avx512(
    Args&&... args) {
  return call<f>(std::forward<Args>(args)...);
}
#endif

// f(args...) (a function or a member function with its object first) through the copy for the
// ISA in use, or for `widest` where that is narrower.
template <auto f, Isa widest = Isa::avx512, typename... Args>
decltype(auto) for_isa(Args&&... args) {
#if DELTAPROP_X86
  switch (current_isa()) {
    case Isa::avx512:
      if constexpr (widest == Isa::avx512) return in_avx512<f>(std::forward<Args>(args)...);
      return in_avx2<f>(std::forward<Args>(args)...);
    case Isa::avx2: return in_avx2<f>(std::forward<Args>(args)...);
    default: break;
  }
#endif
  return in_generic<f>(std::forward<Args>(args)...);
}

}  // namespace deltaprop
