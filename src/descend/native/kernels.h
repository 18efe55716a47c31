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

// a·b rounded, in both dtypes (mul's fma(a, b, −0): gcc cannot contract it into an addition).
template <typename T>
DESCEND_HD T mul_exact(T a, T b) {
  return std::fma(a, b, T(-0.0));
}

// apply with its two products rounded in both dtypes: u = d·γ, θ·keep (keep = 1, exact, when
// the decay is off), then θ − u — the chain's mul_(lr), mul_(1 − k) and θ − u. (float's apply
// leaves gcc free to contract θ − d·γ into one fma, a rounding the chain does not make.)
template <typename T>
DESCEND_HD T apply_exact(T p, T d, const Common<T>& c) {
  const T u = mul_exact(d, c.lr);
  return mul_exact(p, c.keep) - u;
}

// torch's lerp(a, b, w) as its CPU kernel computes it (vec::fmadd), in both dtypes.
template <typename T, bool SMALL>
DESCEND_HD T lerp_exact(T a, T b, T w) {
  return SMALL ? std::fma(w, b - a, a) : std::fma(w - T(1), b - a, b);
}

// v.mul_(β) then addcmul_(g, g, value=1 − β), in both dtypes.
template <typename T>
DESCEND_HD T ewa_sq_exact(T v, T beta, T w, T g) {
  return std::fma(mul(w, g), g, mul(v, beta));
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
  p = apply_exact<T>(p, lion_u<T>(g, m, k), c);  // both products rounded: see apply_exact
}

// ------------------------------------------------------- AdEMAMix, Schedule-Free (issue #14) ----
// Both spell out every op of their chain in both dtypes, as Lion does: a product is mul (never
// contracted into the next addition), an op torch's CPU kernel rounds once (add_ with alpha,
// lerp, addcmul) is one std::fma, and a division by a per-tensor constant is a division (the
// chain's m / (1 − β₁ᵗ), v / (1 − β₂ᵗ)), not a multiplication by its reciprocal.

template <typename T>
struct AdemamixC {
  T w1, b2, w2, eps;  // w1 = 1 − β₁, w2 = 1 − β₂
  T c1, c2;           // per tensor: 1 − β₁ᵗ, 1 − β₂ᵗ (divided by, as the chain does)
  T w3, alpha;        // per tensor: 1 − β₃(s), α(s) after their warm-ups (s = t − 1)
};

// AdEMAMix (scale_by_ademamix): m₁ ← lerp(m₁, g, 1 − β₁); m₂ ← lerp(m₂, g, 1 − β₃(s));
// v ← v·β₂ + (1 − β₂)g²; u = (m₁/(1 − β₁ᵗ) + α(s)·m₂) / (√(v/(1 − β₂ᵗ)) + ε), the mixing one
// add_ with alpha (an fma). SMALL1, SMALL3: lerp's form for m₁, m₂ (|w| < ½).
template <typename T, bool SMALL1, bool SMALL3>
DESCEND_HD void ademamix_element(T& p, T g, T& m1, T& m2, T& v, const AdemamixC<T>& k,
                                 const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  m1 = lerp_exact<T, SMALL1>(m1, g, k.w1);
  m2 = lerp_exact<T, SMALL3>(m2, g, k.w3);
  v = ewa_sq_exact(v, k.b2, k.w2, g);
  const T den = std::sqrt(v / k.c2) + k.eps;
  const T num = std::fma(k.alpha, m2, m1 / k.c1);
  p = apply_exact<T>(p, num / den, c);
}

template <typename T>
struct SchedFreeC {
  T b2, w2, eps;   // AdamW's v (β₂, 1 − β₂, ε)
  T beta, wb;      // the interpolation β and 1 − β
  T c2;            // per tensor: 1 − β₂ᵗ
  T dec, neg_lr;   // per tensor: −γₜλ (decoupled decay of z), −γₜ (z's step)
  T keep_x, coef;  // per tensor: 1 − cₜ, cₜ (the averaging weight)
};

// Schedule-Free (schedule_free, after scale_by_rms for AdamW): d = g, or g/(√(v/(1 − β₂ᵗ)) + ε)
// with v ← v·β₂ + (1 − β₂)g²; z ← z − γₜλ·(θ or z) (DECAY 1: at y = θ, 2: at z, 0: none);
// z ← z − γₜd; x ← x·(1 − cₜ) then add_(z, alpha=cₜ); y = x·β then add_(z, alpha=1 − β);
// the chain's u = θ − y, applied as θ − u (so θ lands where the chain's does, bit for bit).
template <typename T, bool RMS, int DECAY>
DESCEND_HD void schedule_free_element(T& p, T g, T& v, T& z, T& x, const SchedFreeC<T>& k,
                                      const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  T d = g;
  if (RMS) {
    v = ewa_sq_exact(v, k.b2, k.w2, g);
    d = g / (std::sqrt(v / k.c2) + k.eps);
  }
  if (DECAY == 1) z = std::fma(k.dec, p, z);
  if (DECAY == 2) z = std::fma(k.dec, z, z);
  z = std::fma(k.neg_lr, d, z);
  x = std::fma(k.coef, z, mul(x, k.keep_x));
  const T y = std::fma(k.wb, z, mul(x, k.beta));
  p = apply_exact<T>(p, p - y, c);
}

// ------------------------------------------------------------- RAdam, Adamax, ADOPT ----
// These three spell out every operation of their chain cores in both dtypes with the helpers of
// AdEMAMix and Schedule-Free above: a product that torch rounds before an addition is mul_exact,
// what torch's CPU kernel rounds once (lerp, add_ with alpha, addcmul) is one std::fma, and
// divisions stay divisions (torch's `x / c` by a number is a true division in both dtypes).

template <typename T>
struct RadamC {
  T w1, b2, w2, eps_in, eps_out, eps_root;  // w1 = 1 − β₁, w2 = 1 − β₂
  T c1, c2, f, r;  // per tensor: 1 − β₁ᵗ, 1 − β₂ᵗ, √(1 − β₂ᵗ) ("hat") or 1, r_t
  T b1, cn;        // nesterov: β₁ and 1 − β₁ᵗ⁺¹
};

// RAdam (scale_by_radam). m ← lerp(m, g, 1 − β₁), v ← v·β₂ + (1 − β₂)g²; m̂ = m/c₁ (optax's
// nesterov: (m/cₙ)·β₁ + (g/c₁)·(1 − β₁)); rectified (ON, ρ_t > threshold): "hat"
// u = m̂·√c₂/(√v + ε)·r_t, else u = m̂·1/(√(v/c₂ + ε_root [+ ε]) [+ ε])·r_t; off: u = m̂.
template <typename T, bool SMALL, bool ON, bool HAT, bool NEST>
DESCEND_HD void radam_element(T& p, T g, T& m, T& v, const RadamC<T>& k, const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  m = lerp_exact<T, SMALL>(m, g, k.w1);
  v = ewa_sq_exact(v, k.b2, k.w2, g);
  T mh = NEST ? mul_exact(m / k.cn, k.b1) + mul_exact(g / k.c1, k.w1) : m / k.c1;
  if (ON) {
    T den;
    if (HAT)
      den = std::sqrt(v) + k.eps_out;
    else
      den = std::sqrt(v / k.c2 + k.eps_root + k.eps_in) + k.eps_out;
    mh = mh * k.f / den * k.r;
  }
  p = apply_exact<T>(p, mh, c);
}

template <typename T>
struct AdamaxC {
  T w1, b2, eps_in, eps_out, c1;  // c1 per tensor: 1 − β₁ᵗ
};

// Adamax (scale_by_adamax): m ← lerp(m, g, 1 − β₁); u ← maximum(u·β₂, |g| + ε_in) (torch's
// NaN-propagating maximum); u = m/(u + ε_out)/(1 − β₁ᵗ) (ε_in: torch/optax, ε_out: Keras).
template <typename T, bool SMALL>
DESCEND_HD void adamax_element(T& p, T g, T& m, T& u, const AdamaxC<T>& k, const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  m = lerp_exact<T, SMALL>(m, g, k.w1);
  u = max_nan(mul_exact(u, k.b2), std::fabs(g) + k.eps_in);
  p = apply_exact<T>(p, m / (u + k.eps_out) / k.c1, c);
}

template <typename T>
struct AdoptC {
  T b1, w1, b2, w2, eps, clip;  // clip per tensor: c(t − 1), +inf when off
};

// ADOPT's first step (t = 1): v ← v + g² (addcmul_), u = 0; DECAY: the decoupled decay runs
// on this step too (ADOPT's own chain skips it: after_first_step).
template <typename T, bool DECAY>
DESCEND_HD void adopt_first_element(T& p, T g, T& v, const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  v = std::fma(g, g, v);
  p = (DECAY ? mul_exact(p, c.keep) : p) - mul_exact(T(0), c.lr);
}

// ADOPT (scale_by_adopt), t ≥ 2: n = clamp(g / max(√v, ε), ±c); m ← lerp(m, n, 1 − β₁);
// v ← v·β₂ + (1 − β₂)g²; u = m, or (NEST) n·(1 − β₁) then add_(m, alpha=β₁).
template <typename T, bool SMALL, bool NEST>
DESCEND_HD void adopt_element(T& p, T g, T& m, T& v, const AdoptC<T>& k, const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  T den = std::sqrt(v);
  den = den < k.eps ? k.eps : den;  // clamp_min: NaN stays NaN
  const T n = clamp_sym(g / den, k.clip);
  m = lerp_exact<T, SMALL>(m, n, k.w1);
  v = ewa_sq_exact(v, k.b2, k.w2, g);
  const T d = NEST ? std::fma(k.b1, m, mul_exact(n, k.w1)) : m;
  p = apply_exact<T>(p, d, c);
}

// ------------------------------------------------------------- Adadelta, Rprop, ASGD ----
// These three spell every operation out in both dtypes, so each equals the chain bit for bit:
// a product is mul_exact (rounded before anything is added to it, float included), an op torch's
// CPU kernel rounds once (addcmul) is one std::fma, and θ's update is apply_exact (θ·keep and
// d·γ each rounded, then subtracted: foreach mul_ then sub_, as the chain).

template <typename T>
struct AdadeltaC {
  T rho, w, eps;  // w = 1 − ρ
};

// Adadelta (scale_by_adadelta): v ← ρv + (1 − ρ)g²; Δ = √(a + ε) / √(v + ε) · g;
// a ← ρa + (1 − ρ)Δ²; θ ← θ·keep − γΔ.
template <typename T>
DESCEND_HD void adadelta_element(T& p, T g, T& v, T& a, const AdadeltaC<T>& k,
                                 const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  v = ewa_sq_exact(v, k.rho, k.w, g);
  const T std_ = std::sqrt(v + k.eps);
  T delta = std::sqrt(a + k.eps);
  delta = mul_exact(delta / std_, g);
  a = ewa_sq_exact(a, k.rho, k.w, delta);
  p = apply_exact<T>(p, delta, c);
}

template <typename T>
struct RpropC {
  T eta_minus, eta_plus, lo, hi;  // etas and step_sizes, as torch casts them to T
};

// Rprop (scale_by_rprop, torch's iRprop⁻): s = sign(g·g₋₁); η ← clamp(η·(η₊ if s > 0, η₋ if
// s < 0, 1 else), Γ_min, Γ_max); g ← 0 where s < 0; g₋₁ ← g; θ ← θ − η·sign(g). torch.sign is
// 0 for NaN, so a NaN product leaves η (factor 1) and the step (sign 0) as they are; a NaN η
// stays NaN through the clamp (torch.clamp propagates it).
template <typename T>
DESCEND_HD void rprop_element(T& p, T g, T& prev, T& size, const RpropC<T>& k,
                              const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  const T s = sign_of(mul_exact(g, prev));
  const T factor = s > T(0) ? k.eta_plus : (s < T(0) ? k.eta_minus : T(1));
  T z = mul_exact(size, factor);
  z = z < k.lo ? k.lo : z;  // clamp(min), then clamp(max): NaN passes both
  z = z > k.hi ? k.hi : z;
  size = z;
  const T masked = s < T(0) ? T(0) : g;
  prev = masked;
  p = apply_exact<T>(p, mul_exact(sign_of(masked), z), c);
}

template <typename T>
struct AsgdC {
  T keep, eta, mu;  // per tensor: 1 − λη, η and μ of the previous step
};

// ASGD (averaged_sgd, torch's single-tensor form): θ ← θ·(1 − λη) − η·g; θ̄ ← θ̄ + μ(θ − θ̄)
// (AVG: μ ≠ 1), else θ̄ ← θ. The learning rate is inside η: no lr or decay link follows.
template <typename T, bool AVG>
DESCEND_HD void asgd_element(T& p, T g, T& ax, const AsgdC<T>& k, const Common<T>& c) {
  g = grad_in<T>(g, p, c);
  const T shrunk = mul_exact(p, k.keep);
  const T u = mul_exact(g, k.eta);
  // θ − u, through apply_exact with γ = keep = 1 (ASGD has no lr or decay link, Common holds 1s,
  // row columns too): exact, and the lab's per-element loop (each_element) stays vectorised —
  // with Common's lr and keep unused, gcc 12 kept its per-lane copies in memory and gave up.
  const T next = apply_exact<T>(shrunk - u, T(0), c);
  if (AVG)
    ax = ax + mul_exact(next - ax, k.mu);
  else
    ax = next;
  p = next;
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

}  // namespace descend
