// descend fast path: the drivers of every optimizer family, shared by the optimizer entry
// points (cpu.cpp) and the landscape lab's fused step (descend/lab/native/lab.cpp).
//
// A driver prepares one step of a group: a serial pass over the tensors increments each step
// counter and computes the per-tensor coefficients in double, from each tensor's own step
// count (so parameters with different step counts are exact); then it hands a body
// body(i, begin, end) — the family's vectorised per-element loop (kernels.h) over elements
// [begin, end) of tensor i — to a runner, which decides how the elements are walked:
// parallel_ranges below (the optimizers: the group's tensors as one virtual flat buffer cut
// into equal contiguous ranges, one per OpenMP thread, a single parallel region per step,
// none when the work is small), or the lab's chunked loop that evaluates the landscape, steps
// and records each block of rows while it is in cache.
//
// Row mode (Args.row_len > 0) serves the lab: one (N, d) tensor whose rows are independent runs
// with their own learning rate / weight decay, given per element (the vectorised loop) or, for
// a learning rate inside the velocity, per row (a scalar loop row by row).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels.h"

// The short loops of torch's own SGD and Adam run at 256-bit vectors on x86 with gcc (see
// sgd_plain_range); elsewhere at the compiler's choice.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DESCEND_NARROW __attribute__((noinline, target("prefer-vector-width=256")))
#else
#define DESCEND_NARROW __attribute__((noinline))
#endif

namespace descend::drv {

using descend::AdadeltaC;
using descend::AdagradC;
using descend::AdamC;
using descend::AdemamixC;
using descend::LionC;
using descend::SchedFreeC;
using descend::AdamaxC;
using descend::AdoptC;
using descend::RadamC;
using descend::AsgdC;
using descend::RpropC;
using descend::Common;
using descend::MomentumC;
using descend::NadamC;
using descend::RmsC;

// Mirrors descend.optim.fast._lib.Args field by field.
struct Args {
  int64_t n;               // tensors
  const int64_t* numel;    // [n]
  void* const* param;      // [n] θ
  void* const* grad;       // [n] g
  void* const* s0;         // [n] first state tensor (m, v, sum, velocity)
  void* const* s1;         // [n] second (v, ḡ) or NULL
  void* const* s2;         // [n] third (v_max, velocity) or NULL
  void* const* step;       // [n] 0-d step counters (float32, or float64 if step_f64)
  void* const* extra;      // [n] 0-d NAdam μ-product (float32, or float64 if extra_f64)
  const uint8_t* fresh;    // [n] 1 where a modern momentum buffer was just created, or NULL
  int32_t dtype;           // 0 float32, 1 float64
  int32_t step_f64, extra_f64;
  int32_t l2, dec;         // L2 decay before the core; decoupled decay after it
  int32_t mom;             // 0 none, 1 heavy ball, 2 Nesterov
  int32_t debias;          // ema momentum divided by 1 − βᵗ
  int32_t ams;             // 0 off, 1 raw, 2 corrected
  int32_t hat;             // Adam's ε̂ (Keras): u = √(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε)
  int32_t bias1, bias2;    // Adam bias correction of m, v; RMSprop uses bias2
  int32_t centered;
  int32_t schedule;        // NAdam: 0 torch, 1 keras, 2 none
  double gscale, clip, l2_coef, lr, keep;
  double beta1, beta2, eps_in, eps_out;
  double beta, mom_gain, nest_scale;  // momentum β, a (v ← βv + a·x), s (Nesterov s·x + βv)
  double alpha, lr_decay, psi;
  // Per-row hyperparameters (the lab's runs, one per row of an (N, d) parameter): one tensor
  // of N·row_len elements; each pointer is N values overriding the scalar above, or NULL.
  int64_t row_len;         // d; 0 when every hyperparameter is a scalar
  const double* row_lr;    // lr
  const double* row_keep;  // keep
  const double* row_l2;    // l2_coef
  const double* row_gain;  // mom_gain (lr_inside momentum: the lr)
  const double* row_nest;  // nest_scale (idem)
  // The vectorised form of row mode: lr, keep and l2_coef given per element (N·d values of
  // the parameter's dtype, each row's value repeated), or NULL (then the loop goes row by row).
  const void* el_lr;
  const void* el_keep;
  const void* el_l2;
  // AdEMAMix (issue #14): β₃, α and their warm-ups (steps; 0 = none)
  double ademamix_beta3, ademamix_alpha, ademamix_alpha_warmup, ademamix_beta3_warmup;
  // Schedule-Free (issue #14): γ, W, r, p, λ (decoupled, on z) of the averaging, and the
  // per-tensor bookkeeping γ_max, Σw ([n] each, read and updated: Python numbers in the state)
  double sf_lr, sf_warmup, sf_r, sf_power, sf_wd;
  double* sf_lr_max;
  double* sf_weight_sum;
  int32_t sf_rms, sf_decay;  // AdamW's v (scale_by_rms); decay 0 none, 1 at y, 2 at z
  int32_t sf_lag, sf_pad;    // warm-up lag of z's step (0 reference, 1 optax)
  // RAdam, Adamax, ADOPT (issue #14)
  double radam_threshold;   // rectify when ρ_t > threshold
  double radam_eps_root;    // optax's ε inside the root, added to v̂
  int32_t radam_nesterov;   // optax's look-ahead m̂
  int32_t adopt_clip;       // clip n at ±(t − 1)^adopt_clip_exp
  int32_t adopt_nesterov;
  int32_t adopt_first_decay;  // 1: the decoupled decay runs on the first step too
  double adopt_clip_exp;
  const double* adopt_clip_at;  // [n] each tensor's c(t − 1) (a clip_lambda function), or NULL
  // Adadelta, Rprop, ASGD (Adadelta's ρ is alpha, its ε eps_in; ASGD's η is the extra column)
  double rprop_eta_minus, rprop_eta_plus, rprop_step_min, rprop_step_max;
  double asgd_lr, asgd_lambd, asgd_alpha, asgd_t0;
  void* const* asgd_mu;  // [n] 0-d μ (float32, or float64 if asgd_mu_f64)
  int32_t asgd_mu_f64;
  int32_t asgd_round32;  // 1: the new η and μ pass through float32 (torch.as_tensor, default dtype)
  // cautious mask (issue #14, i14kc): 1 masks the core's update (sgd, rmsprop, adam, nadam,
  // lion: the families in abi.CAUTIOUS; step.py never sets it for another).
  int32_t cautious;
};

constexpr int64_t kGrain = 1 << 15;  // fewer elements than this per thread: not worth a thread

// Increment the step counter of tensor i (as torch._foreach_add_(steps, 1) does, in the
// counter's own dtype) and return the new t.
inline double next_step(const Args& a, int64_t i) {
  if (a.step_f64) {
    double* s = static_cast<double*>(a.step[i]);
    *s = *s + 1.0;
    return *s;
  }
  float* s = static_cast<float*>(a.step[i]);
  *s = *s + 1.0f;
  return static_cast<double>(*s);
}

// 1 − βᵗ, reusing the last value when t repeats (the usual case: every tensor at the same t).
struct BiasCorrection {
  double beta, t = -1, value = 1;
  explicit BiasCorrection(double b) : beta(b) {}
  double at(double tt) {
    if (tt != t) {
      t = tt;
      value = 1.0 - std::pow(beta, tt);
    }
    return value;
  }
};

// Run body(i, begin, end) over the virtual flat buffer, split evenly between threads.
template <typename Body>
inline void parallel_ranges(const Args& a, Body body) {
  std::vector<int64_t> offs(a.n + 1, 0);
  for (int64_t i = 0; i < a.n; ++i) offs[i + 1] = offs[i] + a.numel[i];
  const int64_t total = offs[a.n];
  if (total == 0) return;
  int nt = omp_get_max_threads();
  const int64_t most = std::max<int64_t>(1, total / kGrain);
  if (nt > most) nt = static_cast<int>(most);
  auto run = [&](int64_t k, int64_t parts) {
    const int64_t lo = total * k / parts, hi = total * (k + 1) / parts;
    int64_t i = std::upper_bound(offs.begin(), offs.end(), lo) - offs.begin() - 1;
    for (; i < a.n && offs[i] < hi; ++i) {
      const int64_t b = std::max(lo, offs[i]) - offs[i];
      const int64_t e = std::min(hi, offs[i + 1]) - offs[i];
      if (e > b) body(i, b, e);
    }
  };
  if (nt <= 1) {
    run(0, 1);
    return;
  }
#pragma omp parallel num_threads(nt)
  run(omp_get_thread_num(), omp_get_num_threads());
}

template <typename T>
inline Common<T> common(const Args& a) {
  // keep = 1 when the decay is off: float selects θ then, double multiplies by 1 (exact).
  return Common<T>{T(a.gscale), T(a.clip), T(a.l2_coef), T(a.lr), T(a.dec ? a.keep : 1.0),
                   a.l2 != 0, a.dec != 0};
}

// Compile-time dispatch of runtime switches: f(std::integral_constant<int, v>) for v in [0, N).
template <int N, typename F>
void pick(int v, F&& f) {
  if constexpr (N > 0) {
    if (v == N - 1) return f(std::integral_constant<int, N - 1>{});
    pick<N - 1>(v, f);
  }
}

#define DESCEND_RANGE __attribute__((noinline))

// Row mode: walk [b, e) of one (N, d) tensor row by row, f(row, begin, end).
template <typename F>
inline void by_rows(int64_t d, int64_t b, int64_t e, F&& f) {
  for (int64_t r = b / d, j = b; j < e; ++r) {
    const int64_t stop = std::min(e, (r + 1) * d);
    f(r, j, stop);
    j = stop;
  }
}

template <typename T>
inline Common<T> row_common(const Args& a, int64_t r, Common<T> c) {
  if (a.row_lr) c.lr = T(a.row_lr[r]);
  if (a.row_keep) c.keep = T(a.row_keep[r]);
  if (a.row_l2) c.l2 = T(a.row_l2[r]);
  return c;
}

// Row mode, vectorised: f(j, common with element j's lr, keep and l2) over [b, e). keep holds
// 1 when the decay is off (step.py fills it so), as common() does for the scalar.
template <typename T, typename F>
inline void each_element(const Args& a, int64_t b, int64_t e, const Common<T>& c, F&& f) {
  const T* __restrict__ lr = static_cast<const T*>(a.el_lr);
  const T* __restrict__ keep = static_cast<const T*>(a.el_keep);
  const T* __restrict__ l2 = static_cast<const T*>(a.el_l2);
  const T gscale = c.gscale, clip = c.clip;
  const bool l2_on = c.l2_on, decay_on = c.decay_on;
#pragma omp simd
  for (int64_t j = b; j < e; ++j) {
    const Common<T> cj{gscale, clip, l2[j], lr[j], keep[j], l2_on, decay_on};
    f(j, cj);
  }
}

// The three modes every element-wise family's range walks: per-element lr, keep and l2 (the
// lab's (N, d) columns), per row (the lab's (N, 1) columns), else one Common for the whole
// range, vectorised. el(j, c) updates element j with the Common it is given; flatten inlines
// it (and what it calls) into the loops: left to its budget, gcc stopped inlining some
// families' elements once the file held eleven families, and their loops stayed scalar.
template <typename T, typename F>
__attribute__((flatten)) inline void element_range(const Args& a, int64_t b, int64_t e, const Common<T>& c, F&& el) {
  if (a.row_len) {
    if (a.el_lr) return each_element(a, b, e, c, el);
    by_rows(a.row_len, b, e, [&](int64_t r, int64_t j0, int64_t j1) {
      const Common<T> cr = row_common(a, r, c);
      for (int64_t j = j0; j < j1; ++j) el(j, cr);
    });
    return;
  }
#pragma omp simd
  for (int64_t j = b; j < e; ++j) el(j, c);
}

template <typename T>
inline MomentumC<T> row_momentum(const Args& a, int64_t r, MomentumC<T> k) {
  if (a.row_gain) k.a = T(a.row_gain[r]);
  if (a.row_nest) k.s = T(a.row_nest[r]);
  return k;
}

// ---------------------------------------------------------------------------------- SGD ----
// torch's own SGD (no clipping, sign, L2, decay or debiasing): what is left of sgd_element.
// Measured on this machine's Zen 4 cores at 10M fp32 parameters, one thread, on the same
// memory as torch's fused SGD: this loop at 256-bit vectors 4.70–4.96 ms, torch 4.79–5.04 ms,
// the same loop at 512 bits 5.02–5.28 ms, the general loop (run-time clamp) 4.87–5.18 ms.
template <typename T, int MOM>
DESCEND_NARROW void sgd_plain_range(
    T* __restrict__ p, const T* __restrict__ g, T* __restrict__ v, int64_t b, int64_t e,
    MomentumC<T> k, T lr) {
  T dummy = 0;
#pragma omp simd
  for (int64_t j = b; j < e; ++j)
    descend::sgd_plain_element<T, MOM>(p[j], g[j], MOM ? v[j] : dummy, k, lr);
}

template <typename T, int MOM, bool PLAIN>
DESCEND_RANGE void sgd_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ v,
                             int64_t b, int64_t e, MomentumC<T> k, Common<T> c, const Args& a) {
  if (a.row_len) {
    T dummy = 0;
    if (a.el_lr) {
      each_element(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
        descend::sgd_element<T, MOM>(p[j], g[j], MOM ? v[j] : dummy, k, cj);
      });
      return;
    }
    by_rows(a.row_len, b, e, [&](int64_t r, int64_t j0, int64_t j1) {
      const Common<T> cr = row_common(a, r, c);
      const MomentumC<T> kr = row_momentum(a, r, k);
      for (int64_t j = j0; j < j1; ++j)
        descend::sgd_element<T, MOM>(p[j], g[j], MOM ? v[j] : dummy, kr, cr);
    });
    return;
  }
  if constexpr (PLAIN) {
    sgd_plain_range<T, MOM>(p, g, v, b, e, k, c.lr);
    return;
  }
  if (MOM == 0) {
    T dummy = 0;
#pragma omp simd
    for (int64_t j = b; j < e; ++j) descend::sgd_element<T, 0>(p[j], g[j], dummy, k, c);
    return;
  }
#pragma omp simd
  for (int64_t j = b; j < e; ++j) descend::sgd_element<T, MOM>(p[j], g[j], v[j], k, c);
}

template <typename T, typename Runner>
void sgd(const Args& a, Runner&& runner) {
  std::vector<MomentumC<T>> ks(a.n);
  BiasCorrection bc(a.beta);
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    const bool fresh = a.fresh && a.fresh[i];
    ks[i] = MomentumC<T>{T(a.beta), T(a.nest_scale), T(a.debias ? 1.0 / bc.at(t) : 1.0),
                         T(fresh ? 0.0 : a.beta), T(fresh ? 1.0 : a.mom_gain)};
  }
  const Common<T> c = common<T>(a);
  if (a.cautious) return cautious_step(a, ks, c);  // the cautious mask: two passes (below)
  // The general element's clamp, sign, L2, decay and debiasing are identities here: drop them.
  const bool plain = a.gscale == 1.0 && std::isinf(a.clip) && a.clip > 0 && !a.l2 && !a.dec &&
                     !a.debias && !a.row_len;
  pick<3>(a.mom, [&](auto mom) {
    pick<2>(plain, [&](auto simple) {
      runner([&](int64_t i, int64_t b, int64_t e) {
        sgd_range<T, mom(), bool(simple())>(
            static_cast<T*>(a.param[i]), static_cast<const T*>(a.grad[i]),
            a.s0 ? static_cast<T*>(a.s0[i]) : nullptr, b, e, ks[i], c, a);
      });
    });
  });
}

// ------------------------------------------------------------------------------ Adagrad ----
template <typename T>
DESCEND_RANGE void adagrad_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ s,
                                 int64_t b, int64_t e, AdagradC<T> k, Common<T> c,
                                 const Args& a) {
  if (a.row_len) {
    if (a.el_lr) {
      each_element(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
        descend::adagrad_element<T>(p[j], g[j], s[j], k, cj);
      });
      return;
    }
    by_rows(a.row_len, b, e, [&](int64_t r, int64_t j0, int64_t j1) {
      const Common<T> cr = row_common(a, r, c);
      for (int64_t j = j0; j < j1; ++j) descend::adagrad_element<T>(p[j], g[j], s[j], k, cr);
    });
    return;
  }
#pragma omp simd
  for (int64_t j = b; j < e; ++j) descend::adagrad_element<T>(p[j], g[j], s[j], k, c);
}

template <typename T, typename Runner>
void adagrad(const Args& a, Runner&& runner) {
  std::vector<AdagradC<T>> ks(a.n);
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    ks[i] = AdagradC<T>{T(a.eps_in), T(a.eps_out), T(1.0 + (t - 1.0) * a.lr_decay)};
  }
  const Common<T> c = common<T>(a);
  runner([&](int64_t i, int64_t b, int64_t e) {
    adagrad_range<T>(static_cast<T*>(a.param[i]), static_cast<const T*>(a.grad[i]),
                     static_cast<T*>(a.s0[i]), b, e, ks[i], c, a);
  });
}

// ------------------------------------------------------------------------------ RMSprop ----
template <typename T, bool CENTERED, int MOM, bool SMALL>
DESCEND_RANGE void rms_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ v,
                             T* __restrict__ gbar, T* __restrict__ buf, int64_t b, int64_t e,
                             RmsC<T> k, Common<T> c, const Args& a) {
  T dummy_g = 0, dummy_b = 0;
  if (a.row_len) {
    if (a.el_lr) {
      each_element(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
        descend::rms_element<T, CENTERED, MOM, SMALL>(
            p[j], g[j], v[j], CENTERED ? gbar[j] : dummy_g, MOM ? buf[j] : dummy_b, k, cj);
      });
      return;
    }
    by_rows(a.row_len, b, e, [&](int64_t r, int64_t j0, int64_t j1) {
      const Common<T> cr = row_common(a, r, c);
      RmsC<T> kr = k;
      kr.mom = row_momentum(a, r, k.mom);
      for (int64_t j = j0; j < j1; ++j)
        descend::rms_element<T, CENTERED, MOM, SMALL>(p[j], g[j], v[j],
                                                        CENTERED ? gbar[j] : dummy_g,
                                                        MOM ? buf[j] : dummy_b, kr, cr);
    });
    return;
  }
  if (CENTERED && MOM != 0) {
#pragma omp simd
    for (int64_t j = b; j < e; ++j)
      descend::rms_element<T, CENTERED, MOM, SMALL>(p[j], g[j], v[j], gbar[j], buf[j], k, c);
  } else if (CENTERED) {
#pragma omp simd
    for (int64_t j = b; j < e; ++j)
      descend::rms_element<T, CENTERED, MOM, SMALL>(p[j], g[j], v[j], gbar[j], dummy_b, k, c);
  } else if (MOM != 0) {
#pragma omp simd
    for (int64_t j = b; j < e; ++j)
      descend::rms_element<T, CENTERED, MOM, SMALL>(p[j], g[j], v[j], dummy_g, buf[j], k, c);
  } else {
#pragma omp simd
    for (int64_t j = b; j < e; ++j)
      descend::rms_element<T, CENTERED, MOM, SMALL>(p[j], g[j], v[j], dummy_g, dummy_b, k, c);
  }
}

template <typename T, typename Runner>
void rmsprop(const Args& a, Runner&& runner) {
  std::vector<RmsC<T>> ks(a.n);
  BiasCorrection bc(a.alpha);
  const double w = 1.0 - a.alpha;
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    const bool fresh = a.fresh && a.fresh[i];
    ks[i] = RmsC<T>{T(a.alpha), T(w), T(a.eps_in), T(a.eps_out), T(a.bias2 ? 1.0 / bc.at(t) : 1.0),
                    MomentumC<T>{T(a.beta), T(a.nest_scale), T(1), T(fresh ? 0.0 : a.beta),
                                 T(fresh ? 1.0 : a.mom_gain)}};
  }
  const Common<T> c = common<T>(a);
  if (a.cautious) return cautious_step(a, ks, c);  // the cautious mask: two passes (below)
  const bool small = std::abs(T(w)) < T(0.5);  // lerp's form (centered ḡ only)
  pick<2>(a.centered, [&](auto centered) {
    pick<3>(a.mom, [&](auto mom) {
      pick<2>(centered() && !small, [&](auto large) {
        runner([&](int64_t i, int64_t b, int64_t e) {
          rms_range<T, bool(centered()), mom(), !large()>(
              static_cast<T*>(a.param[i]), static_cast<const T*>(a.grad[i]),
              static_cast<T*>(a.s0[i]), a.s1 ? static_cast<T*>(a.s1[i]) : nullptr,
              a.s2 ? static_cast<T*>(a.s2[i]) : nullptr, b, e, ks[i], c, a);
        });
      });
    });
  });
}

// --------------------------------------------------------------------------------- Adam ----
// Adam and AdamW as torch runs them (no clipping, sign, L2 or AMSGrad): what is left of
// adam_element, at 256-bit vectors like sgd_plain_range.
template <typename T, bool SMALL, bool DEC>
DESCEND_NARROW void adam_plain_range(
    T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v, int64_t b,
    int64_t e, AdamC<T> k, T lr, T keep) {
#pragma omp simd
  for (int64_t j = b; j < e; ++j)
    descend::adam_plain_element<T, SMALL, DEC>(p[j], g[j], m[j], v[j], k, lr, keep);
}

template <typename T, int AMS, bool SMALL>
DESCEND_RANGE void adam_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                              T* __restrict__ v, T* __restrict__ vmax, int64_t b, int64_t e,
                              AdamC<T> k, Common<T> c, const Args& a) {
  if (a.row_len) {
    T dummy = 0;
    if (a.el_lr) {
      each_element(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
        descend::adam_element<T, AMS, SMALL>(p[j], g[j], m[j], v[j], AMS ? vmax[j] : dummy, k,
                                             cj);
      });
      return;
    }
    by_rows(a.row_len, b, e, [&](int64_t r, int64_t j0, int64_t j1) {
      const Common<T> cr = row_common(a, r, c);
      for (int64_t j = j0; j < j1; ++j)
        descend::adam_element<T, AMS, SMALL>(p[j], g[j], m[j], v[j], AMS ? vmax[j] : dummy, k,
                                               cr);
    });
    return;
  }
  if (AMS == 0) {
    T dummy = 0;
#pragma omp simd
    for (int64_t j = b; j < e; ++j)
      descend::adam_element<T, 0, SMALL>(p[j], g[j], m[j], v[j], dummy, k, c);
    return;
  }
#pragma omp simd
  for (int64_t j = b; j < e; ++j)
    descend::adam_element<T, AMS, SMALL>(p[j], g[j], m[j], v[j], vmax[j], k, c);
}

template <typename T, typename Runner>
void adam(const Args& a, Runner&& runner) {
  std::vector<AdamC<T>> ks(a.n);
  BiasCorrection bc1(a.beta1), bc2(a.beta2);
  const double w1 = 1.0 - a.beta1, w2 = 1.0 - a.beta2;
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    const double c1 = a.bias1 ? bc1.at(t) : 1.0, c2 = a.bias2 ? bc2.at(t) : 1.0;
    ks[i] = AdamC<T>{T(w1), T(a.beta2), T(w2), T(a.eps_in), T(a.eps_out), T(a.hat ? 1.0 : 1.0 / c2),
                     T(a.hat ? std::sqrt(c2) / c1 : 1.0 / c1)};
  }
  const Common<T> c = common<T>(a);
  if (a.cautious) return cautious_step(a, ks, c);  // the cautious mask: two passes (below)
  const bool plain =
      a.gscale == 1.0 && std::isinf(a.clip) && a.clip > 0 && !a.l2 && !a.ams && !a.row_len;
  if (plain) {
    pick<2>(std::abs(T(w1)) < T(0.5), [&](auto small) {
      pick<2>(a.dec != 0, [&](auto dec) {
        runner([&](int64_t i, int64_t b, int64_t e) {
          adam_plain_range<T, bool(small()), bool(dec())>(
              static_cast<T*>(a.param[i]), static_cast<const T*>(a.grad[i]),
              static_cast<T*>(a.s0[i]), static_cast<T*>(a.s1[i]), b, e, ks[i], c.lr, c.keep);
        });
      });
    });
    return;
  }
  pick<3>(a.ams, [&](auto ams) {
    pick<2>(std::abs(T(w1)) < T(0.5), [&](auto small) {
      runner([&](int64_t i, int64_t b, int64_t e) {
        adam_range<T, ams(), bool(small())>(
            static_cast<T*>(a.param[i]), static_cast<const T*>(a.grad[i]),
            static_cast<T*>(a.s0[i]), static_cast<T*>(a.s1[i]),
            a.s2 ? static_cast<T*>(a.s2[i]) : nullptr, b, e, ks[i], c, a);
      });
    });
  });
}

// -------------------------------------------------------------------------------- NAdam ----
inline double nadam_mu(double beta1, double t, int schedule, double psi) {
  if (schedule == 0) return beta1 * (1.0 - 0.5 * std::pow(0.96, t * psi));
  if (schedule == 1) return beta1 * (1.0 - 0.5 * std::pow(0.96, t));
  return beta1 * 1.0;
}

// Π ← Π·μ in the product's own dtype (torch keeps it as a 0-d tensor); returns the new Π.
inline double next_mu_product(const Args& a, int64_t i, double mu) {
  if (a.extra_f64) {
    double* q = static_cast<double*>(a.extra[i]);
    *q = *q * mu;
    return *q;
  }
  float* q = static_cast<float*>(a.extra[i]);
  *q = *q * static_cast<float>(mu);
  return static_cast<double>(*q);
}

template <typename T, bool SMALL>
DESCEND_RANGE void nadam_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                               T* __restrict__ v, int64_t b, int64_t e, NadamC<T> k,
                               Common<T> c, const Args& a) {
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::nadam_element<T, SMALL>(p[j], g[j], m[j], v[j], k, cj);
  });
}

template <typename T, typename Runner>
void nadam(const Args& a, Runner&& runner) {
  std::vector<NadamC<T>> ks(a.n);
  BiasCorrection bc2(a.beta2);
  const double w1 = 1.0 - a.beta1, w2 = 1.0 - a.beta2;
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    const double mu = nadam_mu(a.beta1, t, a.schedule, a.psi);
    const double mu_next = nadam_mu(a.beta1, t + 1, a.schedule, a.psi);
    const double prod = next_mu_product(a, i, mu);
    ks[i] = NadamC<T>{T(w1),
                      T(a.beta2),
                      T(w2),
                      T(a.eps_out),
                      T(1.0 / bc2.at(t)),
                      T((1.0 - mu) / (1.0 - prod)),
                      T(mu_next / (1.0 - prod * mu_next))};
  }
  const Common<T> c = common<T>(a);
  if (a.cautious) return cautious_step(a, ks, c);  // the cautious mask: two passes (below)
  pick<2>(std::abs(T(w1)) < T(0.5), [&](auto small) {
    runner([&](int64_t i, int64_t b, int64_t e) {
      nadam_range<T, bool(small())>(static_cast<T*>(a.param[i]),
                                    static_cast<const T*>(a.grad[i]), static_cast<T*>(a.s0[i]),
                                    static_cast<T*>(a.s1[i]), b, e, ks[i], c, a);
    });
  });
}

// --------------------------------------------------------------------------------- Lion ----
// One moment, no step-dependent coefficient: the step counter is still advanced (the chain's
// state has it), and every tensor shares one LionC.
template <typename T>
DESCEND_RANGE void lion_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                              int64_t b, int64_t e, LionC<T> k, Common<T> c, const Args& a) {
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::lion_element<T>(p[j], g[j], m[j], k, cj);
  });
}

template <typename T, typename Runner>
void lion(const Args& a, Runner&& runner) {
  for (int64_t i = 0; i < a.n; ++i) next_step(a, i);
  const LionC<T> k{T(a.beta1), T(1.0 - a.beta1), T(a.beta2), T(1.0 - a.beta2)};
  const Common<T> c = common<T>(a);
  if (a.cautious) return cautious_step(a, k, c);  // the cautious mask: two passes (below)
  runner([&](int64_t i, int64_t b, int64_t e) {
    lion_range<T>(static_cast<T*>(a.param[i]), static_cast<const T*>(a.grad[i]),
                  static_cast<T*>(a.s0[i]), b, e, k, c, a);
  });
}

// ---------------------------------------------------- AdEMAMix, Schedule-Free (issue #14) ----
// The per-tensor coefficients are the chain's Python arithmetic in double, operation for
// operation (mul keeps gcc from contracting a product into the next addition, which Python
// never does), so every coefficient equals the chain's before it is rounded to T.

// α(s) (alpha_warmup_value): α·s/T for s < T, else α (T = 0: no warm-up).
inline double ademamix_alpha_at(double alpha, double s, double warmup) {
  if (warmup == 0 || !(s < warmup)) return alpha;
  return (s / warmup) * alpha;
}

// β₃(s) (beta3_warmup_value): linear in the half-life f(β) = ln ½ / ln β − 1 from β_start.
inline double ademamix_beta3_at(double beta3, double start, double s, double warmup) {
  if (warmup == 0 || !(s < warmup)) return beta3;
  const double a = s / warmup;
  auto f = [](double beta) { return beta > 0 ? std::log(0.5) / std::log(beta) - 1 : -1.0; };
  const double h = mul(1.0 - a, f(start)) + mul(a, f(beta3));
  if (h + 1 == 0) return 0.0;
  return std::pow(0.5, 1 / (h + 1));
}

template <typename T, bool SMALL1, bool SMALL3>
DESCEND_RANGE void ademamix_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m1,
                                  T* __restrict__ m2, T* __restrict__ v, int64_t b, int64_t e,
                                  AdemamixC<T> k, Common<T> c, const Args& a) {
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::ademamix_element<T, SMALL1, SMALL3>(p[j], g[j], m1[j], m2[j], v[j], k, cj);
  });
}

template <typename T, typename Runner>
void ademamix(const Args& a, Runner&& runner) {
  std::vector<AdemamixC<T>> ks(a.n);
  std::vector<uint8_t> small3(a.n);
  BiasCorrection bc1(a.beta1), bc2(a.beta2);
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    const double alpha = ademamix_alpha_at(a.ademamix_alpha, t - 1, a.ademamix_alpha_warmup);
    const double b3 =
        ademamix_beta3_at(a.ademamix_beta3, a.beta1, t - 1, a.ademamix_beta3_warmup);
    ks[i] = AdemamixC<T>{T(1.0 - a.beta1), T(a.beta2), T(1.0 - a.beta2), T(a.eps_out),
                         T(bc1.at(t)),     T(bc2.at(t)), T(1.0 - b3),     T(alpha)};
    small3[i] = std::abs(ks[i].w3) < T(0.5);
  }
  const Common<T> c = common<T>(a);
  pick<2>(std::abs(T(1.0 - a.beta1)) < T(0.5), [&](auto small1) {
    runner([&](int64_t i, int64_t b, int64_t e) {
      T* p = static_cast<T*>(a.param[i]);
      const T* g = static_cast<const T*>(a.grad[i]);
      T *m1 = static_cast<T*>(a.s0[i]), *m2 = static_cast<T*>(a.s1[i]);
      T* v = static_cast<T*>(a.s2[i]);
      if (small3[i])
        ademamix_range<T, bool(small1()), true>(p, g, m1, m2, v, b, e, ks[i], c, a);
      else
        ademamix_range<T, bool(small1()), false>(p, g, m1, m2, v, b, e, ks[i], c, a);
    });
  });
}

// γ·t/W during the warm-up (t − 1 < W), else γ (schedule_free._warm).
inline double sf_warm(double lr, double t, double warmup) {
  return warmup != 0 && t - 1 < warmup ? lr * (t / warmup) : lr;
}

template <typename T, bool RMS, int DECAY>
DESCEND_RANGE void schedule_free_range(T* __restrict__ p, const T* __restrict__ g,
                                       T* __restrict__ v, T* __restrict__ z, T* __restrict__ x,
                                       int64_t b, int64_t e, SchedFreeC<T> k, Common<T> c,
                                       const Args& a) {
  T dummy = 0;
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::schedule_free_element<T, RMS, DECAY>(p[j], g[j], RMS ? v[j] : dummy, z[j], x[j], k,
                                                  cj);
  });
}

// Schedule-Free: per tensor, γₜ (warm-up), γ_max ← max(γₜ, γ_max), wₜ = t^r·γ_max^p,
// Σw ← Σw + wₜ, cₜ = wₜ/Σw (0 while Σw = 0), z's rate γₜ₋lag — the chain's bookkeeping,
// updated in place in sf_lr_max / sf_weight_sum (the caller writes them back to the state).
template <typename T, typename Runner>
void schedule_free(const Args& a, Runner&& runner) {
  std::vector<SchedFreeC<T>> ks(a.n);
  BiasCorrection bc2(a.beta2);
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    const double lr_t = sf_warm(a.sf_lr, t, a.sf_warmup);
    double& lr_max = a.sf_lr_max[i];
    lr_max = a.sf_lr_max[i] > lr_t ? a.sf_lr_max[i] : lr_t;  // Python's max(γₜ, γ_max)
    const double weight = mul(std::pow(t, a.sf_r), std::pow(lr_max, a.sf_power));
    double& sum = a.sf_weight_sum[i];
    sum = sum + weight;
    const double coef = sum != 0 ? weight / sum : 0.0;
    const double lr_z = a.sf_lag == 0 ? lr_t : sf_warm(a.sf_lr, t - a.sf_lag, a.sf_warmup);
    ks[i] = SchedFreeC<T>{T(a.beta2),     T(1.0 - a.beta2), T(a.eps_out),
                          T(a.beta),      T(1.0 - a.beta),  T(a.bias2 ? bc2.at(t) : 1.0),
                          T(-(lr_z * a.sf_wd)), T(-lr_z),   T(1.0 - coef),
                          T(coef)};
  }
  const Common<T> c = common<T>(a);
  pick<2>(a.sf_rms, [&](auto rms) {
    pick<3>(a.sf_decay, [&](auto decay) {
      runner([&](int64_t i, int64_t b, int64_t e) {
        schedule_free_range<T, bool(rms()), decay()>(
            static_cast<T*>(a.param[i]), static_cast<const T*>(a.grad[i]),
            rms() ? static_cast<T*>(a.s0[i]) : nullptr, static_cast<T*>(a.s1[i]),
            static_cast<T*>(a.s2[i]), b, e, ks[i], c, a);
      });
    });
  });
}

// ------------------------------------------------------------- RAdam, Adamax, ADOPT ----
// RAdam: every tensor's ρ_t, r_t, bias corrections and branch (ρ_t > threshold) from its own
// step, in double and in the chain's (Python's) order of operations.
inline void radam_rho(double beta2, double t, double& rho_inf, double& rho_t) {
  rho_inf = 2.0 / (1.0 - beta2) - 1.0;
  const double b2t = std::pow(beta2, t);
  rho_t = rho_inf - 2.0 * t * b2t / (1.0 - b2t);
}

inline double radam_rect(double rho_t, double rho_inf) {
  const double ratio =
      (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t);
  return ratio >= 0 ? std::pow(ratio, 0.5) : std::nan("");
}

template <typename T, bool SMALL, bool ON, bool HAT, bool NEST>
DESCEND_RANGE void radam_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                               T* __restrict__ v, int64_t b, int64_t e, RadamC<T> k,
                               Common<T> c, const Args& a) {
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::radam_element<T, SMALL, ON, HAT, NEST>(p[j], g[j], m[j], v[j], k, cj);
  });
}

template <typename T, typename Runner>
void radam(const Args& a, Runner&& runner) {
  std::vector<RadamC<T>> ks(a.n);
  std::vector<uint8_t> on(a.n);
  BiasCorrection bc1(a.beta1), bc2(a.beta2);
  const double w1 = 1.0 - a.beta1, w2 = 1.0 - a.beta2;
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    double rho_inf, rho_t;
    radam_rho(a.beta2, t, rho_inf, rho_t);
    on[i] = rho_t > a.radam_threshold;
    const double c2 = bc2.at(t);
    ks[i] = RadamC<T>{T(w1),           T(a.beta2),     T(w2),
                      T(a.eps_in),     T(a.eps_out),   T(a.radam_eps_root),
                      T(bc1.at(t)),    T(c2),          T(a.hat ? std::sqrt(c2) : 1.0),
                      T(on[i] ? radam_rect(rho_t, rho_inf) : 0.0),
                      T(a.beta1),      T(1.0 - std::pow(a.beta1, t + 1.0))};
  }
  const Common<T> c = common<T>(a);
  pick<2>(std::abs(T(w1)) < T(0.5), [&](auto small) {
    pick<2>(a.hat != 0, [&](auto hat) {
      pick<2>(a.radam_nesterov != 0, [&](auto nest) {
        runner([&](int64_t i, int64_t b, int64_t e) {
          T* p = static_cast<T*>(a.param[i]);
          const T* g = static_cast<const T*>(a.grad[i]);
          T* m = static_cast<T*>(a.s0[i]);
          T* v = static_cast<T*>(a.s1[i]);
          if (on[i])
            radam_range<T, bool(small()), true, bool(hat()), bool(nest())>(p, g, m, v, b, e,
                                                                            ks[i], c, a);
          else
            radam_range<T, bool(small()), false, bool(hat()), bool(nest())>(p, g, m, v, b, e,
                                                                             ks[i], c, a);
        });
      });
    });
  });
}

template <typename T, bool SMALL>
DESCEND_RANGE void adamax_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                                T* __restrict__ u, int64_t b, int64_t e, AdamaxC<T> k,
                                Common<T> c, const Args& a) {
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::adamax_element<T, SMALL>(p[j], g[j], m[j], u[j], k, cj);
  });
}

template <typename T, typename Runner>
void adamax(const Args& a, Runner&& runner) {
  std::vector<AdamaxC<T>> ks(a.n);
  BiasCorrection bc1(a.beta1);
  const double w1 = 1.0 - a.beta1;
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    ks[i] = AdamaxC<T>{T(w1), T(a.beta2), T(a.eps_in), T(a.eps_out), T(bc1.at(t))};
  }
  const Common<T> c = common<T>(a);
  pick<2>(std::abs(T(w1)) < T(0.5), [&](auto small) {
    runner([&](int64_t i, int64_t b, int64_t e) {
      adamax_range<T, bool(small())>(static_cast<T*>(a.param[i]),
                                     static_cast<const T*>(a.grad[i]), static_cast<T*>(a.s0[i]),
                                     static_cast<T*>(a.s1[i]), b, e, ks[i], c, a);
    });
  });
}

// ADOPT: a tensor on its first step (t = 1) only measures v; from t = 2 the clipping bound
// c(t − 1) = (t − 1)^p is that tensor's own (Python's float power, as clip_value_at).
template <typename T, bool SMALL, bool NEST>
DESCEND_RANGE void adopt_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m,
                               T* __restrict__ v, int64_t b, int64_t e, AdoptC<T> k,
                               Common<T> c, const Args& a) {
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::adopt_element<T, SMALL, NEST>(p[j], g[j], m[j], v[j], k, cj);
  });
}

template <typename T, bool DECAY>
DESCEND_RANGE void adopt_first_range(T* __restrict__ p, const T* __restrict__ g,
                                     T* __restrict__ v, int64_t b, int64_t e, Common<T> c,
                                     const Args& a) {
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::adopt_first_element<T, DECAY>(p[j], g[j], v[j], cj);
  });
}

template <typename T, typename Runner>
void adopt(const Args& a, Runner&& runner) {
  std::vector<AdoptC<T>> ks(a.n);
  std::vector<uint8_t> first(a.n);
  const double w1 = 1.0 - a.beta1, w2 = 1.0 - a.beta2;
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    first[i] = t <= 1.0;
    double clip = a.adopt_clip ? std::pow(t - 1.0, a.adopt_clip_exp) : INFINITY;
    if (a.adopt_clip_at) clip = a.adopt_clip_at[i];
    ks[i] = AdoptC<T>{T(a.beta1), T(w1), T(a.beta2), T(w2), T(a.eps_out), T(clip)};
  }
  const Common<T> c = common<T>(a);
  const bool decay_first = a.adopt_first_decay != 0;
  pick<2>(std::abs(T(w1)) < T(0.5), [&](auto small) {
    pick<2>(a.adopt_nesterov != 0, [&](auto nest) {
      runner([&](int64_t i, int64_t b, int64_t e) {
        T* p = static_cast<T*>(a.param[i]);
        const T* g = static_cast<const T*>(a.grad[i]);
        T* v = static_cast<T*>(a.s1[i]);
        if (!first[i])
          adopt_range<T, bool(small()), bool(nest())>(p, g, static_cast<T*>(a.s0[i]), v, b, e,
                                                       ks[i], c, a);
        else if (decay_first)
          adopt_first_range<T, true>(p, g, v, b, e, c, a);
        else
          adopt_first_range<T, false>(p, g, v, b, e, c, a);
      });
    });
  });
}

// ------------------------------------------------------------- Adadelta, Rprop, ASGD ----
// Adadelta and Rprop have no step-dependent coefficient (the step counter is still advanced:
// torch's state has it); every tensor shares one coefficient struct.
template <typename T>
DESCEND_RANGE void adadelta_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ v,
                                  T* __restrict__ acc, int64_t b, int64_t e, AdadeltaC<T> k,
                                  Common<T> c, const Args& a) {
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::adadelta_element<T>(p[j], g[j], v[j], acc[j], k, cj);
  });
}

template <typename T, typename Runner>
void adadelta(const Args& a, Runner&& runner) {
  for (int64_t i = 0; i < a.n; ++i) next_step(a, i);
  const AdadeltaC<T> k{T(a.alpha), T(1.0 - a.alpha), T(a.eps_in)};
  const Common<T> c = common<T>(a);
  runner([&](int64_t i, int64_t b, int64_t e) {
    adadelta_range<T>(static_cast<T*>(a.param[i]), static_cast<const T*>(a.grad[i]),
                      static_cast<T*>(a.s0[i]), static_cast<T*>(a.s1[i]), b, e, k, c, a);
  });
}

template <typename T>
DESCEND_RANGE void rprop_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ prev,
                               T* __restrict__ size, int64_t b, int64_t e, RpropC<T> k,
                               Common<T> c, const Args& a) {
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::rprop_element<T>(p[j], g[j], prev[j], size[j], k, cj);
  });
}

template <typename T, typename Runner>
void rprop(const Args& a, Runner&& runner) {
  for (int64_t i = 0; i < a.n; ++i) next_step(a, i);
  const RpropC<T> k{T(a.rprop_eta_minus), T(a.rprop_eta_plus), T(a.rprop_step_min),
                    T(a.rprop_step_max)};
  const Common<T> c = common<T>(a);
  runner([&](int64_t i, int64_t b, int64_t e) {
    rprop_range<T>(static_cast<T*>(a.param[i]), static_cast<const T*>(a.grad[i]),
                   static_cast<T*>(a.s0[i]), static_cast<T*>(a.s1[i]), b, e, k, c, a);
  });
}

// A 0-d per-parameter state (ASGD's η, μ) in its own dtype.
inline double read_scalar(void* const* col, int64_t i, int32_t f64) {
  return f64 ? *static_cast<const double*>(col[i])
             : static_cast<double>(*static_cast<const float*>(col[i]));
}

inline void write_scalar(void* const* col, int64_t i, int32_t f64, double value) {
  if (f64)
    *static_cast<double*>(col[i]) = value;
  else
    *static_cast<float*>(col[i]) = static_cast<float>(value);
}

template <typename T, bool AVG>
DESCEND_RANGE void asgd_range(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ ax,
                              int64_t b, int64_t e, AsgdC<T> k, Common<T> c, const Args& a) {
  element_range(a, b, e, c, [&](int64_t j, const Common<T>& cj) {
    descend::asgd_element<T, AVG>(p[j], g[j], ax[j], k, cj);
  });
}

// ASGD as torch's single-tensor step: per tensor, t ← t + 1, this step's coefficients from η
// and μ as they are (1 − λη, η; average when μ ≠ 1), then η ← γ/(1 + λγt)^α and
// μ ← 1/max(1, t − t₀), computed in double as Python does (each product rounded) and stored
// in the state's dtype (through float32 first when torch.as_tensor would make a float32).
template <typename T, typename Runner>
void asgd(const Args& a, Runner&& runner) {
  std::vector<AsgdC<T>> ks(a.n);
  std::vector<uint8_t> avg(a.n);
  const double lr = a.asgd_lr, lambd = a.asgd_lambd;
  for (int64_t i = 0; i < a.n; ++i) {
    const double t = next_step(a, i);
    const double eta = read_scalar(a.extra, i, a.extra_f64);
    const double mu = read_scalar(a.asgd_mu, i, a.asgd_mu_f64);
    ks[i] = AsgdC<T>{T(1.0 - descend::mul(lambd, eta)), T(eta), T(mu)};
    avg[i] = mu != 1.0;
    double next_eta = lr / std::pow(1.0 + descend::mul(descend::mul(lambd, lr), t), a.asgd_alpha);
    double next_mu = 1.0 / std::max(1.0, t - a.asgd_t0);
    if (a.asgd_round32) {
      next_eta = static_cast<double>(static_cast<float>(next_eta));
      next_mu = static_cast<double>(static_cast<float>(next_mu));
    }
    write_scalar(a.extra, i, a.extra_f64, next_eta);
    write_scalar(a.asgd_mu, i, a.asgd_mu_f64, next_mu);
  }
  const Common<T> c = common<T>(a);
  runner([&](int64_t i, int64_t b, int64_t e) {
    T* p = static_cast<T*>(a.param[i]);
    const T* g = static_cast<const T*>(a.grad[i]);
    T* ax = static_cast<T*>(a.s0[i]);
    if (avg[i])
      asgd_range<T, true>(p, g, ax, b, e, ks[i], c, a);
    else
      asgd_range<T, false>(p, g, ax, b, e, ks[i], c, a);
  });
}

// ------------------------------------------------------- cautious mask (issue #14, i14kc) ----
// cautious=True masks a family's update u (kernels.h: its core, sgd_u … lion_u) with
// φ = 1[u·x > 0] rescaled by n/(Σφ + 1) per tensor. θ may only be written once the tensor's
// Σφ is known, so a masked step is two passes over each tensor:
//
//   1. count: the core on copies of the state (pure reads of g and the state, and of θ only
//      under L2), Σφ per tensor — nothing is written;
//   2. apply: the family's element as usual (the state updated in place) with u·φ·scale.
//
// Counting on copies (rather than writing the moments in pass 1 and recomputing u from them
// in pass 2) moves the same bytes — pass 1 reads g and the state, pass 2 reads θ, g and the
// state and writes θ and the state, where the other order writes the state in pass 1 and θ in
// pass 2 — and works for every core: Lion's u reads the old moment, which pass 1 would
// overwrite, and pass 2 is then bit for bit the element's own arithmetic. Each thread takes
// the tensors that lie wholly in its range one by one, count then apply, while the tensor is
// still in its cache (one read from memory for tensors up to about the L2's size); only the
// tensors cut between threads wait at one barrier for their other parts' counts.
//
// The drivers call cautious_step(a, ks, c) (found by argument-dependent lookup when they are
// instantiated) after their serial pass, so step counters, bias corrections and NAdam's
// μ-product advance once per step as without the mask. The lab's fused step declines the
// mask (lab.cpp): its runs each step alone there (their masks are per run).

// n/(Σφ + 1) as the chain computes it in T: m.sum() (exact: an integer below 2^24 in float32,
// 2^53 in float64), + 1, then `n / s`, which torch runs as s.reciprocal() * n.
template <typename T>
inline T cautious_scale(int64_t kept, int64_t n) {
  const T s = T(kept) + T(1);
  const T r = T(1) / s;
  return r * T(n);
}

// Pass 1 over [b, e) of one tensor: how many elements the mask keeps. el(j, x, write) is the
// family's core at element j for the core's input x; write = false: on copies of the state.
// Counted in int32 (a vectorised reduction) over blocks of at most 2^30 elements.
template <typename T, bool L2, typename El>
static inline __attribute__((always_inline)) int32_t cautious_kept(const T* __restrict__ p,
                                                                   const T* __restrict__ g,
                                                                   int64_t j,
                                                                   const Common<T>& c, El& el) {
  const T x = grad_in<T>(g[j], L2 ? p[j] : T(0), c);
  return static_cast<int32_t>(descend::cautious_keeps(el(j, x, std::false_type{}), x));
}

template <typename T, bool L2, typename El>
DESCEND_RANGE int32_t cautious_count_block(const T* __restrict__ p, const T* __restrict__ g,
                                           int64_t b, int64_t e, Common<T> c, El el) {
  // l2_on a constant: left a run-time bool, gcc unswitched the loop on it and vectorised only
  // the L2 copy (the other ran scalar, 20x slower)
  Common<T> cl = c;
  cl.l2_on = L2;
  int32_t n = 0;
#pragma omp simd reduction(+ : n)
  for (int64_t j = b; j < e; ++j) n += cautious_kept<T, L2>(p, g, j, cl, el);
  return n;
}

template <typename T, bool L2, typename El>
inline int64_t cautious_count(const T* p, const T* g, int64_t b, int64_t e, Common<T> c, El el) {
  constexpr int64_t kBlock = int64_t(1) << 30;
  int64_t kept = 0;
  for (int64_t b0 = b; b0 < e; b0 += kBlock)
    kept += cautious_count_block<T, L2>(p, g, b0, std::min(e, b0 + kBlock), c, el);
  return kept;
}

// Pass 2 over [b, e): the element with its update masked, u·φ·scale.
template <typename T, typename El>
DESCEND_RANGE void cautious_apply(T* __restrict__ p, const T* __restrict__ g, int64_t b,
                                  int64_t e, Common<T> c, T scale, El el) {
#pragma omp simd
  for (int64_t j = b; j < e; ++j) {
    const T x = grad_in<T>(g[j], p[j], c);
    const T u = el(j, x, std::true_type{});
    p[j] = descend::apply_exact<T>(p[j], descend::cautious_masked(u, x, scale), c);
  }
}

// The two passes over the group, split between threads as parallel_ranges splits it.
// make(i) gives tensor i's core el(j, x, write) (its state pointers and coefficients).
template <typename T, typename Make>
void cautious_ranges(const Args& a, const Common<T>& c, Make&& make) {
  std::vector<int64_t> offs(a.n + 1, 0);
  for (int64_t i = 0; i < a.n; ++i) offs[i + 1] = offs[i] + a.numel[i];
  const int64_t total = offs[a.n];
  if (total == 0) return;
  std::vector<int64_t> kept(a.n, 0);
  int nt = omp_get_max_threads();
  const int64_t most = std::max<int64_t>(1, total / kGrain);
  if (nt > most) nt = static_cast<int>(most);
  auto count = [&](int64_t i, int64_t b, int64_t e) -> int64_t {
    const T* p = static_cast<const T*>(a.param[i]);
    const T* g = static_cast<const T*>(a.grad[i]);
    auto el = make(i);
    return c.l2_on ? cautious_count<T, true>(p, g, b, e, c, el)
                   : cautious_count<T, false>(p, g, b, e, c, el);
  };
  auto apply_part = [&](int64_t i, int64_t b, int64_t e) {
    cautious_apply<T>(static_cast<T*>(a.param[i]), static_cast<const T*>(a.grad[i]), b, e, c,
                      cautious_scale<T>(kept[i], a.numel[i]), make(i));
  };
  auto run = [&](int64_t k, int64_t parts) {
    const int64_t lo = total * k / parts, hi = total * (k + 1) / parts;
    const int64_t first = std::upper_bound(offs.begin(), offs.end(), lo) - offs.begin() - 1;
    int64_t i = first;
    for (; i < a.n && offs[i] < hi; ++i) {
      const int64_t b = std::max(lo, offs[i]) - offs[i];
      const int64_t e = std::min(hi, offs[i + 1]) - offs[i];
      if (e <= b) continue;
      if (b == 0 && e == a.numel[i]) {  // wholly ours: count, then apply while in cache
        kept[i] = count(i, b, e);
        apply_part(i, b, e);
      } else {  // cut between threads: add our part's count
        const int64_t n = count(i, b, e);
#pragma omp atomic
        kept[i] += n;
      }
    }
    if (parts > 1) {
#pragma omp barrier
    }
    for (int64_t j = first; j < i; ++j) {  // the cut tensors, once every part is counted
      const int64_t b = std::max(lo, offs[j]) - offs[j];
      const int64_t e = std::min(hi, offs[j + 1]) - offs[j];
      if (e > b && !(b == 0 && e == a.numel[j])) apply_part(j, b, e);
    }
  };
  if (nt <= 1) {
    run(0, 1);
    return;
  }
#pragma omp parallel num_threads(nt)
  run(omp_get_thread_num(), omp_get_num_threads());
}

// Each family's core for cautious_ranges: el(j, x, write) runs it at element j on the state
// (write: pass 2) or on copies of it (pass 1); slots a family's form does not use are locals.
template <typename T>
void cautious_step(const Args& a, const std::vector<MomentumC<T>>& ks, const Common<T>& c) {
  pick<3>(a.mom, [&](auto mom) {
    constexpr int MOM = decltype(mom)::value;
    cautious_ranges<T>(a, c, [&](int64_t i) {
      T* v = a.s0 ? static_cast<T*>(a.s0[i]) : nullptr;
      const MomentumC<T> k = ks[i];
      return [=](int64_t j, T x, auto write) -> T {
        T v0 = 0;
        if constexpr (MOM != 0) {
          if constexpr (decltype(write)::value) return descend::sgd_u<T, MOM>(x, v[j], k);
          v0 = v[j];
        }
        return descend::sgd_u<T, MOM>(x, v0, k);
      };
    });
  });
}

template <typename T>
void cautious_step(const Args& a, const std::vector<RmsC<T>>& ks, const Common<T>& c) {
  const bool small = std::abs(T(1.0 - a.alpha)) < T(0.5);
  pick<2>(a.centered, [&](auto centered) {
    pick<3>(a.mom, [&](auto mom) {
      pick<2>(centered() && !small, [&](auto large) {
        constexpr bool CENTERED = decltype(centered)::value;
        constexpr int MOM = decltype(mom)::value;
        constexpr bool SMALL = !decltype(large)::value;
        cautious_ranges<T>(a, c, [&](int64_t i) {
          T* v = static_cast<T*>(a.s0[i]);
          T* gbar = a.s1 ? static_cast<T*>(a.s1[i]) : nullptr;
          T* buf = a.s2 ? static_cast<T*>(a.s2[i]) : nullptr;
          const RmsC<T> k = ks[i];
          return [=](int64_t j, T x, auto write) -> T {
            T g0 = 0, b0 = 0;
            if constexpr (decltype(write)::value) {
              return descend::rms_u<T, CENTERED, MOM, SMALL>(x, v[j], CENTERED ? gbar[j] : g0,
                                                             MOM ? buf[j] : b0, k);
            } else {
              T v0 = v[j];
              if constexpr (CENTERED) g0 = gbar[j];
              if constexpr (MOM != 0) b0 = buf[j];
              return descend::rms_u<T, CENTERED, MOM, SMALL>(x, v0, g0, b0, k);
            }
          };
        });
      });
    });
  });
}

template <typename T>
void cautious_step(const Args& a, const std::vector<AdamC<T>>& ks, const Common<T>& c) {
  pick<3>(a.ams, [&](auto ams) {
    pick<2>(std::abs(T(1.0 - a.beta1)) < T(0.5), [&](auto small) {
      constexpr int AMS = decltype(ams)::value;
      constexpr bool SMALL = decltype(small)::value;
      cautious_ranges<T>(a, c, [&](int64_t i) {
        T* m = static_cast<T*>(a.s0[i]);
        T* v = static_cast<T*>(a.s1[i]);
        T* vmax = a.s2 ? static_cast<T*>(a.s2[i]) : nullptr;
        const AdamC<T> k = ks[i];
        return [=](int64_t j, T x, auto write) -> T {
          T x0 = 0;
          if constexpr (decltype(write)::value) {
            return descend::adam_u<T, AMS, SMALL>(x, m[j], v[j], AMS ? vmax[j] : x0, k);
          } else {
            T m0 = m[j], v0 = v[j];
            if constexpr (AMS != 0) x0 = vmax[j];
            return descend::adam_u<T, AMS, SMALL>(x, m0, v0, x0, k);
          }
        };
      });
    });
  });
}

template <typename T>
void cautious_step(const Args& a, const std::vector<NadamC<T>>& ks, const Common<T>& c) {
  pick<2>(std::abs(T(1.0 - a.beta1)) < T(0.5), [&](auto small) {
    constexpr bool SMALL = decltype(small)::value;
    cautious_ranges<T>(a, c, [&](int64_t i) {
      T* m = static_cast<T*>(a.s0[i]);
      T* v = static_cast<T*>(a.s1[i]);
      const NadamC<T> k = ks[i];
      return [=](int64_t j, T x, auto write) -> T {
        if constexpr (decltype(write)::value) {
          return descend::nadam_u<T, SMALL>(x, m[j], v[j], k);
        } else {
          T m0 = m[j], v0 = v[j];
          return descend::nadam_u<T, SMALL>(x, m0, v0, k);
        }
      };
    });
  });
}

template <typename T>
void cautious_step(const Args& a, const LionC<T>& k, const Common<T>& c) {
  cautious_ranges<T>(a, c, [&](int64_t i) {
    T* m = static_cast<T*>(a.s0[i]);
    return [=](int64_t j, T x, auto write) -> T {
      if constexpr (decltype(write)::value) {
        return descend::lion_u<T>(x, m[j], k);
      } else {
        T m0 = m[j];
        return descend::lion_u<T>(x, m0, k);
      }
    };
  });
}

}  // namespace descend::drv
