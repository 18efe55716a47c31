// Values and gradients of the closed-form landscapes, one point (a row of an (N, d) tensor) at
// a time: the compiled twin of each Landscape's torch value_fn / grad_fn
// (descend/landscapes/*.py), which stays the reference (autograd, Hessians, every device).
//
// 2-D: rosenbrock, bowl, ravine, booth, himmelblau, beale, six-hump-camel, goldstein-price,
// saddle, monkey-saddle; 1-D: quadratic, double-well, quartic. Not here: rastrigin, ackley,
// plateau and two-dips, whose cos / sin / exp gcc does not vectorise with these flags (no
// vector variants without -ffast-math): a call would leave the row loops scalar.
//
// Each function is written with the operations of its torch form in the same order, so the
// two agree to rounding. Where torch's CPU kernel rounds a·b + c once (addcmul, sub/add with
// alpha: fused multiply-adds in its AVX2 code) the twin calls std::fma, so Rosenbrock's agree
// bitwise on such CPUs. The others agree bitwise too (tests/test_lab_native.py), except to a
// few ulps where torch calls pow (x**4, x**5: products here; quartic's f, six-hump-camel's
// ∂f/∂x) or autograd (goldstein-price's gradient: the chain rule written out here). A point's
// value goes to *f and its gradient to g[0..d); either may be skipped (want_f / want_g are
// compile-time switches, so the row loops stay vectorised).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels.h"  // DESCEND_HD

// No implicit fused multiply-adds where a landscape is evaluated: torch rounds a·b and then
// a·b + c (except where it calls fmadd itself: std::fma here), while gcc contracts a·b + c into
// one fma by default (-ffp-contract=fast, left on for the optimizer kernels). The loops that
// inline a landscape's at() (rows below, track::rows_simd) are compiled without contraction.
// (clang, whose default contracts within one expression, would need its own pragma.)
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define DESCEND_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define DESCEND_NO_CONTRACT
#endif

namespace descend::land {

// Landscape ids: mirrored in descend.native.abi.LANDSCAPES (checked at load time). Adding a
// landscape: its struct below, an id here, a case in dispatch(), and the id in abi.py and on
// the Landscape (``kernel=``).
enum Id : int32_t {
  kNone = 0,
  kRosenbrock = 1,      // c = (a, b): (a − x)² + b(y − x²)²
  kBowl = 2,            // x² + y²
  kRavine = 3,          // c = (h00, h01, h11): ½ pᵀHp
  kBooth = 4,           // (x + 2y − 7)² + (2x + y − 5)²
  kHimmelblau = 5,      // (x² + y − 11)² + (x + y² − 7)²
  kBeale = 6,           // Σᵢ (cᵢ − x + xyⁱ)²
  kSixHumpCamel = 7,    // (4 − 2.1x² + x⁴/3)x² + xy + (−4 + 4y²)y²
  kGoldsteinPrice = 8,  // [1 + (x+y+1)²q₁]·[30 + (2x−3y)²q₂]
  kSaddle = 9,          // x² − y²
  kMonkeySaddle = 10,   // x³ − 3xy²
  kQuadratic = 11,      // c = (a): ½ a x²
  kDoubleWell = 12,     // (x² − 1)²
  kQuartic = 13,        // x⁴
};

// The constants of a landscape that has none: inherit them.
struct NoConstants {
  template <typename T>
  struct K {};
  template <typename T>
  static K<T> constants(const double*) {
    return {};
  }
};

// A landscape is a struct with its dimension kDim (1 or 2), its registry name kName, its
// constants K<T> made from the call's doubles by constants<T>(c) once per loop (inherited
// from NoConstants when it has none), and
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

// The landscapes below follow their torch forms (descend.landscapes.shapes, .classic, .one_d)
// op by op: Python evaluates left to right, a Python float meets a tensor as T(c) (torch casts
// the scalar to the tensor's dtype), x**2 is x·x and x**3 (x·x)·x in torch, but x**4 and x**5
// go through pow (not bitwise reproducible: products here).

// bowl: value (p·p).sum(1) = x² + y²; grad 2p.
struct Bowl : NoConstants {
  static constexpr int64_t kDim = 2;
  static constexpr const char* kName = "bowl";
  template <typename T>
  DESCEND_HD void at(T x, T y, T& f, T& gx, T& gy, const K<T>&) {
    f = x * x + y * y;
    gx = T(2) * x;
    gy = T(2) * y;
  }
};

// ravine: value 0.5·(h00·x·x + 2h01·x·y + h11·y·y) (2h01 a Python float); grad
// (h00·x + h01·y, h10·x + h11·y) with h10 = h01. c = (h00, h01, h11), H as Python built it.
struct Ravine {
  static constexpr int64_t kDim = 2;
  static constexpr const char* kName = "ravine";
  template <typename T>
  struct K {
    T h00, h01, h11, two_h01;
  };
  template <typename T>
  static K<T> constants(const double* c) {
    return {T(c[0]), T(c[1]), T(c[2]), T(2 * c[1])};
  }
  template <typename T>
  DESCEND_HD void at(T x, T y, T& f, T& gx, T& gy, const K<T>& k) {
    f = T(0.5) * ((k.h00 * x * x + k.two_h01 * x * y) + k.h11 * y * y);
    gx = k.h00 * x + k.h01 * y;
    gy = k.h01 * x + k.h11 * y;
  }
};

// booth: value (x + 2y − 7)² + (2x + y − 5)²; grad (10x + 8y − 34, 8x + 10y − 38).
struct Booth : NoConstants {
  static constexpr int64_t kDim = 2;
  static constexpr const char* kName = "booth";
  template <typename T>
  DESCEND_HD void at(T x, T y, T& f, T& gx, T& gy, const K<T>&) {
    const T u = (x + T(2) * y) - T(7), v = (T(2) * x + y) - T(5);
    f = u * u + v * v;
    gx = (T(10) * x + T(8) * y) - T(34);
    gy = (T(8) * x + T(10) * y) - T(38);
  }
};

// himmelblau: a = x·x + y − 11, b = x + y·y − 7; value a² + b²; grad (4x·a + 2b, 2a + 4y·b).
struct Himmelblau : NoConstants {
  static constexpr int64_t kDim = 2;
  static constexpr const char* kName = "himmelblau";
  template <typename T>
  DESCEND_HD void at(T x, T y, T& f, T& gx, T& gy, const K<T>&) {
    const T a = (x * x + y) - T(11), b = (x + y * y) - T(7);
    f = a * a + b * b;
    gx = (T(4) * x) * a + T(2) * b;
    gy = T(2) * a + (T(4) * y) * b;
  }
};

// beale: tᵢ = cᵢ − x + x·yⁱ (y**1 is y, y**2 y·y, y**3 (y·y)·y); value Σ tᵢ² (the sum starts
// at 0: 0 + t₁² is t₁²); grad Σ 2tᵢ·(yⁱ − 1) and Σ ((2tᵢ·i)·x)·yⁱ⁻¹ (y**0 is 1), from zeros.
struct Beale : NoConstants {
  static constexpr int64_t kDim = 2;
  static constexpr const char* kName = "beale";
  template <typename T>
  DESCEND_HD void at(T x, T y, T& f, T& gx, T& gy, const K<T>&) {
    const T y2 = y * y, y3 = y2 * y;
    const T t1 = (T(1.5) - x) + x * y;
    const T t2 = (T(2.25) - x) + x * y2;
    const T t3 = (T(2.625) - x) + x * y3;
    f = (t1 * t1 + t2 * t2) + t3 * t3;
    gx = ((T(2) * t1) * (y - T(1)) + (T(2) * t2) * (y2 - T(1))) + (T(2) * t3) * (y3 - T(1));
    gy = ((T(2) * t1) * x + (((T(2) * t2) * T(2)) * x) * y) + (((T(2) * t3) * T(3)) * x) * y2;
  }
};

// six-hump-camel: value (4 − 2.1x² + x²·x²/3)·x² + x·y + (−4 + 4y²)·y²; grad
// (8x − 8.4x³ + 2x⁵ + y, x − 8y + 16y³) with x⁵ = (x²·x²)·x here (torch: pow, to an ulp).
struct SixHumpCamel : NoConstants {
  static constexpr int64_t kDim = 2;
  static constexpr const char* kName = "six-hump-camel";
  template <typename T>
  DESCEND_HD void at(T x, T y, T& f, T& gx, T& gy, const K<T>&) {
    const T x2 = x * x, y2 = y * y;
    f = (((T(4) - T(2.1) * x2) + (x2 * x2) / T(3)) * x2 + x * y) + (T(4) * y2 + T(-4)) * y2;
    gx = ((T(8) * x - T(8.4) * (x2 * x)) + T(2) * ((x2 * x2) * x)) + y;
    gy = (x - T(8) * y) + T(16) * (y2 * y);
  }
};

// goldstein-price: s = x + y + 1, q₁ = 19 − 14x + 3x·x − 14y + 6x·y + 3y·y, u = 2x − 3y,
// q₂ = 18 − 32x + 12x·x + 48y − 36x·y + 27y·y; value (1 + s²q₁)·(30 + u²q₂) as torch's.
// The torch form has no grad_fn (autograd): here the chain rule, with ∂q₁/∂x = ∂q₁/∂y =
// 6x + 6y − 14, ∂q₂/∂x = 24x − 36y − 32, ∂q₂/∂y = 54y − 36x + 48 (to rounding).
struct GoldsteinPrice : NoConstants {
  static constexpr int64_t kDim = 2;
  static constexpr const char* kName = "goldstein-price";
  template <typename T>
  DESCEND_HD void at(T x, T y, T& f, T& gx, T& gy, const K<T>&) {
    const T s = (x + y) + T(1), ss = s * s;
    const T q1 = ((((T(19) - T(14) * x) + (T(3) * x) * x) - T(14) * y) + (T(6) * x) * y) +
                 (T(3) * y) * y;
    const T first = ss * q1 + T(1);
    const T u = T(2) * x - T(3) * y, uu = u * u;
    const T q2 = ((((T(18) - T(32) * x) + (T(12) * x) * x) + T(48) * y) - (T(36) * x) * y) +
                 (T(27) * y) * y;
    const T second = uu * q2 + T(30);
    f = first * second;
    const T d1 = (T(2) * s) * q1 + ss * ((T(6) * x + T(6) * y) - T(14));
    const T dx2 = (T(4) * u) * q2 + uu * ((T(24) * x - T(36) * y) - T(32));
    const T dy2 = (T(-6) * u) * q2 + uu * ((T(54) * y - T(36) * x) + T(48));
    gx = d1 * second + first * dx2;
    gy = d1 * second + first * dy2;
  }
};

// saddle: value x**2 − y**2; grad (2x, −2y).
struct Saddle : NoConstants {
  static constexpr int64_t kDim = 2;
  static constexpr const char* kName = "saddle";
  template <typename T>
  DESCEND_HD void at(T x, T y, T& f, T& gx, T& gy, const K<T>&) {
    f = x * x - y * y;
    gx = T(2) * x;
    gy = T(-2) * y;
  }
};

// monkey-saddle: value x**3 − 3·x·y·y; grad (3x·x − 3y·y, −6x·y).
struct MonkeySaddle : NoConstants {
  static constexpr int64_t kDim = 2;
  static constexpr const char* kName = "monkey-saddle";
  template <typename T>
  DESCEND_HD void at(T x, T y, T& f, T& gx, T& gy, const K<T>&) {
    f = (x * x) * x - ((T(3) * x) * y) * y;
    gx = (T(3) * x) * x - (T(3) * y) * y;
    gy = (T(-6) * x) * y;
  }
};

// quadratic: value (0.5·a, a Python float)·x**2; grad a·x. c = (a).
struct Quadratic {
  static constexpr int64_t kDim = 1;
  static constexpr const char* kName = "quadratic";
  template <typename T>
  struct K {
    T a, half_a;
  };
  template <typename T>
  static K<T> constants(const double* c) {
    return {T(c[0]), T(0.5 * c[0])};
  }
  template <typename T>
  DESCEND_HD void at(T x, T& f, T& gx, const K<T>& k) {
    f = k.half_a * (x * x);
    gx = k.a * x;
  }
};

// double-well: value (x**2 − 1)**2; grad 4·x**3 − 4x.
struct DoubleWell : NoConstants {
  static constexpr int64_t kDim = 1;
  static constexpr const char* kName = "double-well";
  template <typename T>
  DESCEND_HD void at(T x, T& f, T& gx, const K<T>&) {
    const T r = x * x - T(1);
    f = r * r;
    gx = T(4) * ((x * x) * x) - T(4) * x;
  }
};

// quartic: value x**4, here (x·x)·(x·x) (torch: pow, to an ulp); grad 4·x**3.
struct Quartic : NoConstants {
  static constexpr int64_t kDim = 1;
  static constexpr const char* kName = "quartic";
  template <typename T>
  DESCEND_HD void at(T x, T& f, T& gx, const K<T>&) {
    const T x2 = x * x;
    f = x2 * x2;
    gx = T(4) * (x2 * x);
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
DESCEND_NO_CONTRACT void rows(const T* __restrict__ p, T* __restrict__ f, T* __restrict__ g,
                              int64_t r0, int64_t r1, const double* consts) {
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
    case kBowl:
      f(Bowl{});
      return true;
    case kRavine:
      f(Ravine{});
      return true;
    case kBooth:
      f(Booth{});
      return true;
    case kHimmelblau:
      f(Himmelblau{});
      return true;
    case kBeale:
      f(Beale{});
      return true;
    case kSixHumpCamel:
      f(SixHumpCamel{});
      return true;
    case kGoldsteinPrice:
      f(GoldsteinPrice{});
      return true;
    case kSaddle:
      f(Saddle{});
      return true;
    case kMonkeySaddle:
      f(MonkeySaddle{});
      return true;
    case kQuadratic:
      f(Quadratic{});
      return true;
    case kDoubleWell:
      f(DoubleWell{});
      return true;
    case kQuartic:
      f(Quartic{});
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
