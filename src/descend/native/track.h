// The lab's per-step bookkeeping of each run (row) — the compiled twin of
// descend.lab.tracker.Tracker.update, which stays the reference: same quantities, same
// dtype, same order of operations, so the two agree exactly (tests/test_lab_native.py).
//
// For run r at step t, given f(θ_t) and θ_{t+1} (the optimizer's output, in place):
//   steps-to-tol: count ← count + [count > 0 ∨ f − f* < tol] (reached once, counted since)
//   a row the optimizer stopped, or whose θ is NaN/±Inf or has |θ_i| > bound, is frozen:
//     θ_{t+1} ← θ_t from then on, and the step is kept (stopped_step = t, diverged_step = t+1)
//   Δ = θ_{t+1} − θ_t; path += ‖Δ‖; overshoots += #{i : Δ_i·Δ_prev,i < −τ²}; Δ_prev ← Δ
//   θ_t ← θ_{t+1} (kept for the next step), and the thinned records.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "landscapes.h"

namespace descend::track {

// Mirrors descend.native.abi.LabArgs field by field.
struct LabArgs {
  int64_t rows, dim;
  int32_t dtype;         // 0 float32, 1 float64
  int32_t family;        // optimizer family stepped in the fused call, −1 none (see lab.cpp)
  int32_t function;      // landscape id evaluated in the call (landscapes.h), 0: f, g given
  int32_t f_known;       // 1: count steps to f − f* < tol
  double consts[8];      // the landscape's constants
  int64_t t;             // the first step of the call: f(θ_t) is observed, θ_{t+1} recorded
  int64_t steps;         // steps in the call (more than 1 only when fused)
  double f_star, tol, bound, flip_below;
  void* theta;           // (N, d) θ_t on entry (θ_{t+1} after the optimizer)
  void* grad;            // (N, d) ∇f(θ_t), written when function != 0
  void* f;               // (N,) f(θ_t), written when function != 0
  void* prev;            // (d, N) θ_t as the tracker kept it (coordinate-major)
  void* vel_prev;        // (d, N) Δ_{t−1} (coordinate-major)
  void* path_length;     // (N,) Σ‖Δ‖
  int32_t* overshoots;   // (N,)
  int32_t* reached_count;  // (N,) steps so far at which f − f* < tol had been reached
  int32_t* frozen;       // (N,) 0 or 1
  int64_t* diverged_step;  // (N,) −1 until it diverges
  int64_t* stopped_step;   // (N,) −1 until the optimizer stops it
  const uint8_t* stop;   // (N,) rows the optimizer stopped at this step, or NULL
  void* losses;          // (R, N) loss records
  void* trajectory;      // (R, N, d) position records
  const int64_t* loss_slot;   // [steps] record of f(θ_t) for each step of the call, or −1
  const int64_t* theta_slot;  // [steps] record of θ_{t+1}, or −1
};

// One step's addition to a run's steps-to-tol count: 1 once f − f* < tol has been reached
// (f − 0 is f: one form for f* = 0 too).
template <typename T>
DESCEND_HD int32_t reached(int32_t count, T f, T f_star, T tol) {
  return int32_t(count > 0) | int32_t((f - f_star) < tol);
}

// Steps-to-tol of rows [r0, r1) from f(θ_t).
template <typename T>
void observe(const LabArgs& a, int64_t r0, int64_t r1) {
  if (!a.f_known) return;
  const T* __restrict__ f = static_cast<const T*>(a.f);
  int32_t* __restrict__ count = a.reached_count;
  const T shift = T(a.f_star), tol = T(a.tol);
#pragma omp simd
  for (int64_t r = r0; r < r1; ++r) count[r] += reached(count[r], f[r], shift, tol);
}

// The record of f(θ_t) at step k of the call, rows [r0, r1), where kept.
template <typename T>
void record_loss(const LabArgs& a, int64_t k, int64_t r0, int64_t r1) {
  if (a.loss_slot[k] < 0) return;
  const T* __restrict__ f = static_cast<const T*>(a.f);
  T* __restrict__ out = static_cast<T*>(a.losses) + a.loss_slot[k] * a.rows;
#pragma omp simd
  for (int64_t r = r0; r < r1; ++r) out[r] = f[r];
}

// The record of θ_{t+1} at step k of the call, rows [r0, r1), where kept.
template <typename T>
void record_theta(const LabArgs& a, int64_t k, int64_t r0, int64_t r1) {
  if (a.theta_slot[k] < 0) return;
  const int64_t d = a.dim;
  const T* __restrict__ th = static_cast<const T*>(a.theta);
  T* __restrict__ out = static_cast<T*>(a.trajectory) + a.theta_slot[k] * a.rows * d;
#pragma omp simd
  for (int64_t j = r0 * d; j < r1 * d; ++j) out[j] = th[j];
}

// Any dimension, and rows an optimizer stopped: row by row, as the reference reads. Returns
// how many rows froze at step t.
template <typename T>
int64_t rows_general(const LabArgs& a, int64_t t, int64_t r0, int64_t r1) {
  const int64_t d = a.dim, n = a.rows;
  T* __restrict__ th = static_cast<T*>(a.theta);
  T* __restrict__ prev = static_cast<T*>(a.prev);
  T* __restrict__ vp = static_cast<T*>(a.vel_prev);
  T* __restrict__ path = static_cast<T*>(a.path_length);
  const T bound = T(a.bound), flip = T(a.flip_below);
  int64_t newly = 0;
  for (int64_t r = r0; r < r1; ++r) {
    T* x = th + r * d;
    bool fr = a.frozen[r];
    if (a.stop && a.stop[r] && !fr) {
      a.stopped_step[r] = t;
      fr = true;
      ++newly;
    }
    bool ok = true;
    for (int64_t i = 0; i < d; ++i) ok = ok && std::abs(x[i]) <= bound;  // NaN fails
    if (!ok && !fr) {
      a.diverged_step[r] = t + 1;
      fr = true;
      ++newly;
    }
    if (fr) {
      for (int64_t i = 0; i < d; ++i) x[i] = prev[i * n + r];
      a.frozen[r] = 1;
    }
    T sq = 0;
    int32_t flips = 0;
    for (int64_t i = 0; i < d; ++i) {
      const T dv = x[i] - prev[i * n + r];
      sq = i == 0 ? dv * dv : std::fma(dv, dv, sq);  // Δ₀², then addcmul of each column
      flips += (dv * vp[i * n + r]) < flip;
      vp[i * n + r] = dv;
      prev[i * n + r] = x[i];
    }
    path[r] = path[r] + (d == 1 ? std::abs(vp[r]) : std::sqrt(sq));
    a.overshoots[r] += flips;
  }
  return newly;
}

// No landscape evaluated in rows_simd.
struct NoEval {};

// The landscape's constants in T (none for NoEval).
template <typename L, typename T>
auto lc(const double* c) {
  if constexpr (std::is_same_v<L, NoEval>)
    return 0;
  else
    return L::template constants<T>(c);
}

// d = D (1 or 2) and no stop mask: one vectorised loop in which a frozen row or one that
// leaves the bound (or turns NaN/±Inf) is put back by a select, so its Δ is 0 and its
// metrics do not move — what the row-by-row form does with branches. With a landscape L
// (landscapes.h) the same loop goes on to the next step's start: f and ∇f at θ_{t+1} (into
// a.f, a.grad) and its steps-to-tol, so θ is read once per step.
template <typename T, int D, typename L = NoEval>
DESCEND_NO_CONTRACT int64_t rows_simd(const LabArgs& a, int64_t t, int64_t r0, int64_t r1) {
  static_assert(D == 1 || D == 2, "rows_simd: d = 1 or 2");
  constexpr bool kEval = !std::is_same_v<L, NoEval>;
  T* __restrict__ fv = static_cast<T*>(a.f);
  T* __restrict__ gv = static_cast<T*>(a.grad);
  int32_t* __restrict__ count = a.reached_count;
  const T shift = T(a.f_star), tol = T(a.tol);
  const int32_t f_known = a.f_known != 0;
  const auto c = lc<L, T>(a.consts);
  const int64_t n = a.rows;
  const T* __restrict__ th = static_cast<const T*>(a.theta);
  T* __restrict__ prev0 = static_cast<T*>(a.prev);
  T* __restrict__ prev1 = prev0 + (D == 2 ? n : 0);
  T* __restrict__ vp0 = static_cast<T*>(a.vel_prev);
  T* __restrict__ vp1 = vp0 + (D == 2 ? n : 0);
  T* __restrict__ path = static_cast<T*>(a.path_length);
  int32_t* __restrict__ over = a.overshoots;
  int32_t* __restrict__ frozen = a.frozen;
  const T bound = T(a.bound), flip = T(a.flip_below);
  int32_t newly = 0, held = 0;
#pragma omp simd reduction(+ : newly, held)
  for (int64_t r = r0; r < r1; ++r) {
    const int32_t was = frozen[r];
    const T x0 = th[D * r], p0 = prev0[r];
    const T x1 = D == 2 ? th[D * r + 1] : T(0), p1 = D == 2 ? prev1[r] : T(0);
    const bool inside = (std::abs(x0) <= bound) & (std::abs(x1) <= bound);  // NaN fails
    const int32_t now = (was == 0) & !inside;
    const bool move = (was == 0) & inside;
    const T y0 = move ? x0 : p0, y1 = move ? x1 : p1;
    const T d0 = y0 - p0, d1 = y1 - p1;
    int32_t flips = int32_t((d0 * vp0[r]) < flip);
    prev0[r] = y0;
    vp0[r] = d0;
    T norm;
    if constexpr (D == 2) {
      flips += int32_t((d1 * vp1[r]) < flip);
      prev1[r] = y1;
      vp1[r] = d1;
      norm = std::sqrt(std::fma(d1, d1, d0 * d0));  // Δ₀², then addcmul of Δ₁
    } else {
      norm = std::abs(d0);
    }
    path[r] = path[r] + norm;
    over[r] += flips;
    frozen[r] = was | now;
    newly += now;
    held += !move;
    if constexpr (kEval) {
      T fq, g0, g1;
      descend::land::at<L, T>(y0, y1, fq, g0, g1, c);
      fv[r] = fq;
      gv[D * r] = g0;
      if constexpr (D == 2) gv[D * r + 1] = g1;
      count[r] += f_known & reached(count[r], fq, shift, tol);
    }
  }
  if (held) {  // rare: put frozen rows back (prev holds their θ_t), date those frozen now
    T* __restrict__ x = static_cast<T*>(a.theta);
    for (int64_t r = r0; r < r1; ++r) {
      if (!frozen[r]) continue;
      x[D * r] = prev0[r];
      if (D == 2) x[D * r + 1] = prev1[r];
      if (a.diverged_step[r] < 0 && a.stopped_step[r] < 0) a.diverged_step[r] = t + 1;
    }
  }
  return newly;
}

// Step k of the call for rows [r0, r1): steps-to-tol, divergence, path metrics, records.
// Returns how many rows froze.
template <typename T>
int64_t track(const LabArgs& a, int64_t k, int64_t r0, int64_t r1) {
  const int64_t t = a.t + k;
  observe<T>(a, r0, r1);
  record_loss<T>(a, k, r0, r1);
  int64_t newly;
  if (a.stop == nullptr && a.dim == 2)
    newly = rows_simd<T, 2>(a, t, r0, r1);
  else if (a.stop == nullptr && a.dim == 1)
    newly = rows_simd<T, 1>(a, t, r0, r1);
  else
    newly = rows_general<T>(a, t, r0, r1);
  record_theta<T>(a, k, r0, r1);
  return newly;
}

}  // namespace descend::track
