// descend fast path: the per-element update of every optimizer family.
//
// One function per family reads each element of θ, g and the state once and writes each once;
// the host driver (cpu.cpp) runs it over a list of tensors with OpenMP, and a CUDA driver can
// call the same functions from a kernel (DESCEND_HD becomes __host__ __device__). Everything a
// step needs that does not depend on the element (bias corrections, NAdam's μ, the clipping
// factor) is computed once per tensor or per step by the driver, in double, and arrives here as
// a coefficient of type T.
//
// The arithmetic follows the default (foreach) path of descend.transforms op by op, so the two
// agree to rounding: e.g. m ← lerp(m, g, 1 − β₁) in torch's lerp form, v̂ = v·(1 − β₂ᵗ)⁻¹,
// u = m / (√v̂ + ε) · ((1 − β₁ᵗ)⁻¹) · γ, θ ← θ·(1 − γλ) − u. One exception, for speed: a
// division by a per-tensor constant is a multiplication by its reciprocal (one rounding apart;
// divisions and square roots, not memory, bound a single core otherwise). Non-finite values
// propagate as they do there (comparisons are written so that NaN passes through clamp and
// max).
//
// Every scalar of a float64 step is a float64: gcc contracts a·b + c into one fused
// multiply-add by default (-ffp-contract=fast), whose product is never rounded to double, and
// that moved float64 runs ~1e-16 a step from the default path (up to 1e-8 after 50 steps where
// a trajectory amplifies it). In double every product is therefore rounded (mul), and a fused
// multiply-add (std::fma) is written out exactly where torch's own CPU kernel for the default
// path's op rounds once — add/sub with alpha, lerp, addcmul (vec::fmadd) — so the two paths
// compute the same operations. float keeps the code gcc generated before (contracted where it
// likes), which is what its fp32 parity with torch's fused kernels was measured on.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#define DESCEND_HD __host__ __device__ __forceinline__
#else
#define DESCEND_HD static inline __attribute__((always_inline))
#endif

namespace descend {

template <typename T>
constexpr bool kF64 = std::is_same_v<T, double>;

// a·b rounded to T before anything is added to it. In double it is spelled fma(a, b, −0): the
// exact product plus −0 rounded once, i.e. a·b rounded (signed zeros included), and an fma's
// result is not a product gcc could contract into the next addition (__builtin_assoc_barrier
// does not stop gcc 12 inside vectorised loops; -ffp-contract=off cannot be set per T).
template <typename T>
DESCEND_HD T mul(T a, T b) {
  if constexpr (kF64<T>) return std::fma(a, b, T(-0.0));
  return a * b;
}

// What every family shares: g ← clamp(s·g, −c, c) [+ λθ] before the core, and
// θ ← θ·(1 − k) − γ·d after it (s = ±clip factor, the sign for maximize; c = +inf when off).
// The two decays are switches read at run time (a select per element, so the loops stay
// vectorised and the build small); the value left out is never used, so an infinite θ does
// not turn into 0·∞ = NaN.
template <typename T>
struct Common {
  T gscale, clip, l2, lr, keep;  // keep = 1 − k, decoupled/independent decay factor
  bool l2_on, decay_on;
};

template <typename T>
DESCEND_HD T clamp_sym(T g, T c) {
  return g < -c ? -c : (g > c ? c : g);  // NaN stays NaN, like torch.clamp
}

// torch.maximum: NaN if either is NaN.
template <typename T>
DESCEND_HD T max_nan(T a, T b) {
  return (a > b || a != a) ? a : b;
}

// torch's lerp: small weights (|w| < ½) as a + w·(b − a), large ones as b + (w − 1)·(b − a).
// SMALL is a compile-time switch: a select on a run-time bool stops gcc from vectorising.
// (torch's CPU lerp is one vec::fmadd: in double, std::fma.)
template <typename T, bool SMALL>
DESCEND_HD T lerp(T a, T b, T w) {
  if constexpr (kF64<T>) return SMALL ? std::fma(w, b - a, a) : std::fma(w - T(1), b - a, b);
  return SMALL ? w * (b - a) + a : (w - T(1)) * (b - a) + b;
}

// v·β + (1 − β)·g² as torch's mul_ then addcmul_(g, g, value=1 − β): fma((1 − β)·g, g, v·β).
template <typename T>
DESCEND_HD T ewa_sq(T v, T beta, T w, T g) {
  if constexpr (kF64<T>) return std::fma(mul(w, g), g, mul(v, beta));
  return v * beta + w * g * g;
}

template <typename T>
DESCEND_HD T grad_in(T g, T p, const Common<T>& c) {
  g = clamp_sym(mul(g, c.gscale), c.clip);
  // add_(p, alpha=λ): torch rounds g + λ·θ once, as gcc's contraction of this expression does.
  // (A std::fma here stops gcc 12 from vectorising the run-time select on l2_on.)
  return c.l2_on ? g + c.l2 * p : g;
}

template <typename T>
DESCEND_HD T apply(T p, T d, const Common<T>& c) {
  T u = mul(d, c.lr);
  if constexpr (kF64<T>) {
    // keep is 1 when the decay is off (the drivers see to it): θ·1 is θ exactly (±0, ±∞ and
    // NaN included), and no run-time select, which gcc 12 would not vectorise around an fma.
    p = mul(p, c.keep);
  } else {
    p = c.decay_on ? p * c.keep : p;
  }
  return p - u;
}

// Heavy-ball velocity v ← b·v + a·x in any form (modern: a = 1 − τ; ema: a = 1 − β;
// lr_inside: a = γ; a fresh modern buffer: b = 0, a = 1, i.e. v₁ = x). MOM: 0 none,
// 1 heavy ball (d = v), 2 Nesterov (d = s·x + β·v).
template <typename T, int MOM>
DESCEND_HD T velocity(T x, T& v, T b, T a, T beta, T s) {
  if (MOM == 0) return x;
  if constexpr (kF64<T>) {  // mul_(b), add_(x, alpha=a); Nesterov: x·s, add_(v, alpha=β)
    v = std::fma(a, x, mul(v, b));
    return MOM == 2 ? std::fma(beta, v, mul(x, s)) : v;
  }
  v = v * b + a * x;
  return MOM == 2 ? x * s + beta * v : v;
}

template <typename T>
struct MomentumC {
  T beta, s, debias;  // debias: 1/(1 − βᵗ) (ema with debias) or 1
  T b, a;             // per tensor (a fresh buffer has b = 0, a = 1)
};

// The core of each family (sgd_u, rms_u, adam_u, nadam_u, lion_u): the update u the chain's
// core hands on (before the lr), from the gradient it sees, updating the state in place; the
// element is grad_in → core → apply, and the cautious mask (below) runs the same cores.
template <typename T, int MOM>
DESCEND_HD T sgd_u(T g, T& v, const MomentumC<T>& k) {
  T d = velocity<T, MOM>(g, v, k.b, k.a, k.beta, k.s);
  if (MOM != 0) d = d * k.debias;
  return d;
}

template <typename T, int MOM>
DESCEND_HD void sgd_element(T& p, T g, T& v, const MomentumC<T>& k, const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  p = apply<T>(p, sgd_u<T, MOM>(g, v, k), c);
}

// sgd_element where the clip factor and sign are 1, the clip bound infinite, and L2, decay and
// debiasing off (torch's own SGD): the operations left are the same, so the result is too.
template <typename T, int MOM>
DESCEND_HD void sgd_plain_element(T& p, T g, T& v, const MomentumC<T>& k, T lr) {
  const T d = velocity<T, MOM>(g, v, k.b, k.a, k.beta, k.s);
  p = p - mul(d, lr);
}

template <typename T>
struct AdagradC {
  T eps_in, eps_out, factor;  // factor = 1 + (t − 1)·lr_decay
};

template <typename T>
DESCEND_HD void adagrad_element(T& p, T g, T& s, const AdagradC<T>& k, const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  if constexpr (kF64<T>)
    s = std::fma(g, g, s);  // addcmul_(g, g)
  else
    s = s + g * g;
  T den = std::sqrt(s + k.eps_in) + k.eps_out;
  den = den * k.factor;
  p = apply<T>(p, g / den, c);
}

template <typename T>
struct RmsC {
  T alpha, w, eps_in, eps_out, corr;  // w = 1 − α; corr = 1/(1 − αᵗ) or 1
  MomentumC<T> mom;
};

template <typename T, bool CENTERED, int MOM, bool SMALL>
DESCEND_HD T rms_u(T g, T& v, T& gbar, T& buf, const RmsC<T>& k) {
  v = ewa_sq(v, k.alpha, k.w, g);
  T vt = mul(v, k.corr);
  if (CENTERED) {  // optax's order: correct each moment, then centre (corr = 1: v − ḡ²)
    gbar = lerp<T, SMALL>(gbar, g, k.w);
    const T gh = mul(gbar, k.corr);
    vt = vt - mul(gh, gh);
  }
  T den = std::sqrt(vt + k.eps_in) + k.eps_out;
  T d = g / den;
  return velocity<T, MOM>(d, buf, k.mom.b, k.mom.a, k.mom.beta, k.mom.s);
}

template <typename T, bool CENTERED, int MOM, bool SMALL>
DESCEND_HD void rms_element(T& p, T g, T& v, T& gbar, T& buf, const RmsC<T>& k,
                            const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  p = apply<T>(p, rms_u<T, CENTERED, MOM, SMALL>(g, v, gbar, buf, k), c);
}

template <typename T>
struct AdamC {
  T w1, b2, w2, eps_in, eps_out;  // w1 = 1 − β₁, w2 = 1 − β₂
  T corr2, mul;  // per tensor: v̂ = v·corr2, corr2 = 1/(1 − β₂ᵗ); u = m/denom·mul with
                 // mul = 1/(1 − β₁ᵗ), or √(1 − β₂ᵗ)/(1 − β₁ᵗ) for the "hat" ε (corr2 = 1)
};

// AMS: 0 off, 1 max of the raw v (torch, Keras), 2 max of v̂ (optax).
template <typename T, int AMS, bool SMALL>
DESCEND_HD T adam_u(T g, T& m, T& v, T& vmax, const AdamC<T>& k) {
  m = lerp<T, SMALL>(m, g, k.w1);
  v = ewa_sq(v, k.b2, k.w2, g);
  T vv = v;
  if (AMS == 1) vv = vmax = max_nan(vmax, v);
  T vh = mul(vv, k.corr2);
  if (AMS == 2) vh = vmax = max_nan(vmax, vh);
  T den = std::sqrt(vh + k.eps_in) + k.eps_out;
  return m / den * k.mul;
}

template <typename T, int AMS, bool SMALL>
DESCEND_HD void adam_element(T& p, T g, T& m, T& v, T& vmax, const AdamC<T>& k,
                             const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  p = apply<T>(p, adam_u<T, AMS, SMALL>(g, m, v, vmax, k), c);
}

// adam_element with the clip factor and sign 1, the clip bound infinite, no L2 and no AMSGrad
// (torch's Adam and AdamW, every convention's default): the same operations without the
// identities, so the same result.
template <typename T, bool SMALL, bool DEC>
DESCEND_HD void adam_plain_element(T& p, T g, T& m, T& v, const AdamC<T>& k, T lr, T keep) {
  m = lerp<T, SMALL>(m, g, k.w1);
  v = ewa_sq(v, k.b2, k.w2, g);
  const T den = std::sqrt(mul(v, k.corr2) + k.eps_in) + k.eps_out;
  const T u = mul(m / den * k.mul, lr);
  p = (DEC ? mul(p, keep) : p) - u;
}

template <typename T>
struct NadamC {
  T w1, b2, w2, eps;
  T corr2, cg, cm;  // per tensor: 1/(1 − β₂ᵗ), (1 − μ_t)/(1 − Π_t), μ_{t+1}/(1 − Π_{t+1})
};

template <typename T, bool SMALL>
DESCEND_HD T nadam_u(T g, T& m, T& v, const NadamC<T>& k) {
  m = lerp<T, SMALL>(m, g, k.w1);
  v = ewa_sq(v, k.b2, k.w2, g);
  T den = std::sqrt(v * k.corr2) + k.eps;
  // g·c_g, then add_(m, alpha=c_m)
  T num = kF64<T> ? std::fma(k.cm, m, mul(g, k.cg)) : g * k.cg + k.cm * m;
  return num / den;
}

template <typename T, bool SMALL>
DESCEND_HD void nadam_element(T& p, T g, T& m, T& v, const NadamC<T>& k, const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  p = apply<T>(p, nadam_u<T, SMALL>(g, m, v, k), c);
}

template <typename T>
struct LionC {
  T b1, w1, b2, w2;  // w1 = 1 − β₁, w2 = 1 − β₂
};

// torch.sign, as its CPU kernel computes it: (0 < x) − (x < 0), so +0 for ±0 and for NaN (a
// NaN in c leaves θ where it is; the NaN stays in m).
template <typename T>
DESCEND_HD T sign_of(T x) {
  return T(T(0) < x) - T(x < T(0));
}

// Lion (scale_by_lion): c = m·β₁ then add_(g, alpha=1 − β₁); u = sign(c); m ← m·β₂ then
// add_(g, alpha=1 − β₂). Each add with alpha is one fma in torch's CPU kernel (vec::fmadd),
// in float32 as in float64, so both dtypes spell it out: the sign of c is then the chain's sign
// bit for bit (a contraction gcc picked could flip it where c is within a rounding of 0).
template <typename T>
DESCEND_HD T lion_u(T g, T& m, const LionC<T>& k) {
  const T mi = m;
  const T ci = std::fma(k.w1, g, mul(mi, k.b1));
  m = std::fma(k.w2, g, mul(mi, k.b2));
  return sign_of(ci);
}

template <typename T>
DESCEND_HD void lion_element(T& p, T g, T& m, const LionC<T>& k, const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  p = apply<T>(p, lion_u<T>(g, m, k), c);
}

// ------------------------------------------------------- cautious mask (issue #14, i14kc) ----
// cautious=True (transforms/cautious.py): u ← u·φ·n/(Σφ + 1), φ = 1[u·x > 0] per tensor, x the
// gradient the core sees (after grad_in). φ as the chain forms it: torch._foreach_mul(u, x)
// rounded to T, then > 0 (a product that underflows to 0 is not kept); the kept scale is
// φ·scale (scale or 0) and u·(φ·scale) one more rounded product — so a NaN u stays NaN, as
// u·0 does there. The per-tensor scale comes from the drivers' first pass (drivers.h).
template <typename T>
DESCEND_HD bool cautious_keeps(T u, T x) {
  return mul(u, x) > T(0);
}

template <typename T>
DESCEND_HD T cautious_masked(T u, T x, T scale) {
  return mul(u, cautious_keeps(u, x) ? scale : T(0));
}

// apply() with both products rounded in float32 too (in float64 it is apply: mul is this fma,
// and keep is 1 without decay): θ·(1 − k) and d·γ rounded, then subtracted, as the chain does.
// Left to gcc, float32 θ − d·γ becomes one fma; harmless for Lion's unmasked ±1·γ (exact), it
// would put a masked Lion's ±scale·γ a rounding off the chain's.
template <typename T>
DESCEND_HD T cautious_apply_rounded(T p, T d, const Common<T>& c) {
  const T u = std::fma(d, c.lr, T(-0.0));
  return std::fma(p, c.keep, T(-0.0)) - u;  // keep = 1 without decay (common(), step.py)
}

}  // namespace descend
