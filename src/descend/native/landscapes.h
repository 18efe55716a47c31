// Values and gradients of the classic landscapes, one point (a row of an (N, d) tensor) at a
// time: the compiled twin of each Landscape's torch value_fn / grad_fn
// (descend/landscapes/*.py), which stays the reference (autograd, Hessians, every device).
//
// Each function is written with the operations of its torch form in the same order, so the
// two agree to rounding. Where torch's CPU kernel rounds a·b + c once (addcmul, sub/add with
// alpha: fused multiply-adds in its AVX2 code) the twin calls std::fma, so Rosenbrock's agree
// bitwise on such CPUs. A point's value goes to *f and its gradient to g[0..d); either may be
// skipped (want_f / want_g are compile-time switches, so the row loops stay vectorised).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels.h"  // DESCEND_HD

namespace descend::land {

// Landscape ids: mirrored in descend.native.abi.LANDSCAPES (checked at load time). Adding a
// landscape: its struct below, an id here, a case in dispatch(), and the id in abi.py and on
// the Landscape (``kernel=``).
enum Id : int32_t {
  kNone = 0,
  kRosenbrock = 1,  // c = (a, b): (a − x)² + b(y − x²)²
};

// A landscape is a struct with its dimension kDim (1 or 2), its registry name kName, its
// constants K<T> made from the call's doubles by constants<T>(c) once per loop, and
//   template <typename T> at(T x, T y, T& f, T& gx, T& gy, const K<T>& k)    (2-D)
//   template <typename T> at(T x, T& f, T& gx, const K<T>& k)                (1-D)
// giving f and ∇f at the point. Coordinates and results are scalars, not arrays: a local
// array whose address is taken stops gcc from vectorising the loops over points.

// The torch form (descend.landscapes.classic.rosenbrock): r = addcmul(y, x, x, value=−1),
// u = a − x; ∂f/∂y = r·(2b); ∂f/∂x = (x·r)·(−4b) − 2u (sub_ with alpha=2);
// f = (r·r)·b + u·u (addcmul_).
struct Rosenbrock {
  static constexpr int64_t kDim = 2;
  static constexpr const char* kName = "rosenbrock";
  template <typename T>
  struct K {
    T a, b, two_b, m4b;
  };
  template <typename T>
  static K<T> constants(const double* c) {  // 2b and −4b in double, as Python computes them
    return {T(c[0]), T(c[1]), T(2 * c[1]), T(-4 * c[1])};
  }
  template <typename T>
  DESCEND_HD void at(T x, T y, T& f, T& gx, T& gy, const K<T>& k) {
    const T r = std::fma(-x, x, y);
    const T u = k.a - x;
    gy = r * k.two_b;
    gx = std::fma(T(-2), u, (x * r) * k.m4b);
    f = std::fma(u, u, (r * r) * k.b);
  }
};

// f and ∇f at one point x (d = L::kDim values) into f and g0, g1.
template <typename L, typename T, typename Kt>
DESCEND_HD void at(T x0, T x1, T& f, T& g0, T& g1, const Kt& k) {
  if constexpr (L::kDim == 2)
    L::template at<T>(x0, x1, f, g0, g1, k);
  else
    L::template at<T>(x0, f, g0, k);
}

// f and/or ∇f of rows [r0, r1) of the (N, d) points p (row-major); f is (N,), g is (N, d).
template <typename L, typename T, bool WF, bool WG>
void rows(const T* __restrict__ p, T* __restrict__ f, T* __restrict__ g, int64_t r0, int64_t r1,
          const double* consts) {
  constexpr int64_t d = L::kDim;
  const auto k = L::template constants<T>(consts);
#pragma omp simd
  for (int64_t r = r0; r < r1; ++r) {
    T fr, g0, g1;
    at<L, T>(p[d * r], d == 2 ? p[d * r + 1] : T(0), fr, g0, g1, k);
    if (WF) f[r] = fr;
    if (WG) {
      g[d * r] = g0;
      if (d == 2) g[d * r + 1] = g1;
    }
  }
}

// f(L{}) with the landscape struct of id; false (f not called) for an unknown id.
template <typename F>
bool dispatch(int32_t id, F&& f) {
  switch (id) {
    case kRosenbrock:
      f(Rosenbrock{});
      return true;
    default:
      return false;
  }
}

// The name of landscape id ("" if unknown), for the loader's consistency check.
inline const char* name_of(int32_t id) {
  const char* name = "";
  dispatch(id, [&](auto l) { name = decltype(l)::kName; });
  return name;
}

// The number of coordinates of landscape id, 0 if unknown.
inline int64_t dimension(int32_t id) {
  int64_t d = 0;
  dispatch(id, [&](auto l) { d = decltype(l)::kDim; });
  return d;
}

// f and/or ∇f of rows [r0, r1) of landscape id; false (nothing written) for an unknown id or
// a dimension that is not the landscape's.
template <typename T, bool WF, bool WG>
bool evaluate(int32_t id, const T* p, T* f, T* g, int64_t d, int64_t r0, int64_t r1,
              const double* c) {
  bool ok = false;
  dispatch(id, [&](auto l) {
    using L = decltype(l);
    if (d != L::kDim) return;
    rows<L, T, WF, WG>(p, f, g, r0, r1, c);
    ok = true;
  });
  return ok;
}

}  // namespace descend::land
