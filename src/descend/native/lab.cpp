// descend.lab entry points: landscape evaluation, the per-step bookkeeping, and the fused lab
// run. The lab holds N runs as the rows of one (N, d) tensor θ; a step evaluates f and ∇f at
// every row, moves every row with one optimizer, and updates each run's metrics. Step by
// step over the whole tensor, every array (θ, ∇f, the optimizer's state, the metrics) goes
// through memory at every step — at 100,000 runs that traffic, not arithmetic, sets the
// pace. The runs are independent, so the fused call swaps the loops: each block of
// kBlockRows rows is evaluated, stepped (the optimizer family's own driver and per-element
// code: drivers.h, kernels.h) and tracked (track.h) for all the call's steps while it stays
// in cache, then the next block. Each row sees exactly the operations, in the same order, of
// the step-by-step loop, so the results are the same bit for bit. The group's step counter
// (and NAdam's μ-product), shared by all rows, is copied into each block, advanced there
// and written back once.
//
// Plain C ABI (called through ctypes, like cpu.cpp).
#include "drivers.h"
#include "landscapes.h"
#include "track.h"

namespace {

using descend::drv::Args;
using descend::track::LabArgs;

// A block of runs whose arrays (θ, ∇f, f, the optimizer's state, the metrics: ~50 bytes a
// coordinate) stay in a core's L2 cache across steps.
constexpr int64_t kBlockRows = 2048;

bool known_function(const LabArgs& a) {
  return a.function == 0 || descend::land::dimension(a.function) == a.dim;
}

// body(r0, r1) over blocks of rows, in parallel when the work is large enough; returns the
// sum of what the blocks return (rows frozen).
template <typename Body>
int64_t blocks(const LabArgs& a, Body&& body) {
  const int64_t n = a.rows;
  const int64_t count = (n + kBlockRows - 1) / kBlockRows;
  int nt = omp_get_max_threads();
  const int64_t most = std::max<int64_t>(1, n * a.dim / descend::drv::kGrain);
  if (nt > most) nt = static_cast<int>(most);
  int64_t total = 0;
  if (nt <= 1) {
    for (int64_t k = 0; k < count; ++k)
      total += body(k * kBlockRows, std::min(n, (k + 1) * kBlockRows));
    return total;
  }
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : total)
  for (int64_t k = 0; k < count; ++k)
    total += body(k * kBlockRows, std::min(n, (k + 1) * kBlockRows));
  return total;
}

template <typename T>
void evaluate(const LabArgs& a, int64_t r0, int64_t r1) {
  const T* p = static_cast<const T*>(a.theta);
  T* f = static_cast<T*>(a.f);
  T* g = static_cast<T*>(a.grad);
  namespace land = descend::land;
  if (f && g)
    land::evaluate<T, true, true>(a.function, p, f, g, a.dim, r0, r1, a.consts);
  else if (f)
    land::evaluate<T, true, false>(a.function, p, f, g, a.dim, r0, r1, a.consts);
  else if (g)
    land::evaluate<T, false, true>(a.function, p, f, g, a.dim, r0, r1, a.consts);
}

// One family's step of the rows [r0, r1): runner(body) with body the per-element loop.
template <typename T, typename Runner>
bool step_family(int32_t family, const Args& opt, Runner&& runner) {
  namespace drv = descend::drv;
  switch (family) {
    case 0:
      drv::sgd<T>(opt, runner);
      return true;
    case 1:
      drv::adagrad<T>(opt, runner);
      return true;
    case 2:
      drv::rmsprop<T>(opt, runner);
      return true;
    case 3:
      drv::adam<T>(opt, runner);
      return true;
    case 4:
      drv::nadam<T>(opt, runner);
      return true;
    case 5:
      drv::lion<T>(opt, runner);
      return true;
    // AdEMAMix, Schedule-Free (issue #14)
    case 6:
      drv::ademamix<T>(opt, runner);
      return true;
    case 7:
      drv::schedule_free<T>(opt, runner);
      return true;
    // RAdam, Adamax, ADOPT (issue #14)
    case 8:
      drv::radam<T>(opt, runner);
      return true;
    case 9:
      drv::adamax<T>(opt, runner);
      return true;
    case 10:
      drv::adopt<T>(opt, runner);
      return true;
    // Adadelta, Rprop, ASGD (issue #14)
    case 11:
      drv::adadelta<T>(opt, runner);
      return true;
    case 12:
      drv::rprop<T>(opt, runner);
      return true;
    case 13:
      drv::asgd<T>(opt, runner);
      return true;
    default:
      return false;
  }
}

// A one-element counter of the group (step, μ-product) in its own dtype, copied per block.
struct Counter {
  double d = 0;
  float f = 0;
  void* ptr[1] = {nullptr};
  void load(const void* src, bool f64) {
    if (f64)
      d = *static_cast<const double*>(src);
    else
      f = *static_cast<const float*>(src);
    ptr[0] = f64 ? static_cast<void*>(&d) : static_cast<void*>(&f);
  }
  void store(void* dst, bool f64) const {
    if (f64)
      *static_cast<double*>(dst) = d;
    else
      *static_cast<float*>(dst) = f;
  }
};

template <typename T>
int64_t lab_run(const Args* opt, const LabArgs& a) {
  const int64_t d = a.dim, steps = a.steps;
  if (a.family < 0) {  // one step's evaluation and bookkeeping (the optimizer ran already)
    return blocks(a, [&](int64_t r0, int64_t r1) {
      if (a.function) evaluate<T>(a, r0, r1);
      return descend::track::track<T>(a, 0, r0, r1);
    });
  }
  namespace track = descend::track;
  // d = 1 or 2: the tracking of step t and the landscape at θ_{t+1} in one pass of rows,
  // rows_simd<T, D, L>. Only that pass depends on the landscape L: the optimizer's step is
  // compiled once per D, not once per landscape (13 landscapes: 2.4× the compile time).
  using Pass = int64_t (*)(const LabArgs&, int64_t, int64_t, int64_t);
  Pass pass = nullptr;
  descend::land::dispatch(a.function, [&](auto l) {
    using L = decltype(l);
    constexpr int D = int(L::kDim);
    if constexpr (D == 1 || D == 2) pass = &track::rows_simd<T, D, L>;
  });
  const bool fused = pass != nullptr;  // then d = L::kDim (known_function)
  Counter step0, extra0, step_end, extra_end;
  step0.load(opt->step[0], opt->step_f64);
  if (opt->extra) extra0.load(opt->extra[0], opt->extra_f64);
  Counter mu0, mu_end;  // ASGD's μ, a second per-parameter scalar
  if (opt->asgd_mu) mu0.load(opt->asgd_mu[0], opt->asgd_mu_f64);
  // Schedule-Free's bookkeeping (γ_max, Σw of the group's one tensor): per block, as the
  // counters, each block starting from the same values and the first block's kept at the end
  const bool sf = opt->sf_lr_max != nullptr;
  const double sf0[2] = {sf ? opt->sf_lr_max[0] : 0.0, sf ? opt->sf_weight_sum[0] : 0.0};
  double sf_end[2] = {sf0[0], sf0[1]};
  const int64_t frozen = blocks(a, [&](int64_t r0, int64_t r1) {
    Args local = *opt;
    Counter step, extra;
    double sf_lr_max = sf0[0], sf_weight_sum = sf0[1];
    if (sf) {
      local.sf_lr_max = &sf_lr_max;
      local.sf_weight_sum = &sf_weight_sum;
    }
    step.load(step0.ptr[0], opt->step_f64);
    local.step = step.ptr;
    if (opt->extra) {
      extra.load(extra0.ptr[0], opt->extra_f64);
      local.extra = extra.ptr;
    }
    Counter mu;
    if (opt->asgd_mu) {
      mu.load(mu0.ptr[0], opt->asgd_mu_f64);
      local.asgd_mu = mu.ptr;
    }
    int64_t newly = 0;
    if (fused) {
      evaluate<T>(a, r0, r1);
      track::observe<T>(a, r0, r1);
      track::record_loss<T>(a, 0, r0, r1);
      for (int64_t k = 0; k < steps; ++k) {
        local.fresh = k == 0 ? opt->fresh : nullptr;  // buffers created for the first step
        step_family<T>(a.family, local, [&](auto&& body) { body(0, r0 * d, r1 * d); });
        if (k + 1 < steps) {
          newly += pass(a, a.t + k, r0, r1);
          track::record_theta<T>(a, k, r0, r1);
          track::record_loss<T>(a, k + 1, r0, r1);
        } else {
          newly += d == 2 ? track::rows_simd<T, 2>(a, a.t + k, r0, r1)
                          : track::rows_simd<T, 1>(a, a.t + k, r0, r1);
          track::record_theta<T>(a, k, r0, r1);
        }
      }
    }
    for (int64_t k = 0; !fused && k < steps; ++k) {  // any other dimension: pass by pass
      local.fresh = k == 0 ? opt->fresh : nullptr;
      step_family<T>(a.family, local, [&](auto&& body) {
        if (a.function) evaluate<T>(a, r0, r1);
        body(0, r0 * d, r1 * d);
        newly += track::track<T>(a, k, r0, r1);
      });
    }
    if (r0 == 0) {  // every block ends with the same counters: keep the first block's
      step_end = step;
      extra_end = extra;
      mu_end = mu;
      sf_end[0] = sf_lr_max;
      sf_end[1] = sf_weight_sum;
    }
    return newly;
  });
  step_end.store(opt->step[0], opt->step_f64);
  if (opt->extra) extra_end.store(opt->extra[0], opt->extra_f64);
  if (opt->asgd_mu) mu_end.store(opt->asgd_mu[0], opt->asgd_mu_f64);
  if (sf) {
    opt->sf_lr_max[0] = sf_end[0];
    opt->sf_weight_sum[0] = sf_end[1];
  }
  return frozen;
}

}  // namespace

// f and/or ∇f (a->f, a->grad; NULL skips one) of the rows of a->theta; −1 for an unknown
// landscape or a dimension that is not its own, else 0.
extern "C" int64_t descend_landscape(const LabArgs* a) {
  if (a->function == 0 || !known_function(*a)) return -1;
  blocks(*a, [&](int64_t r0, int64_t r1) -> int64_t {
    if (a->dtype == 1)
      evaluate<double>(*a, r0, r1);
    else
      evaluate<float>(*a, r0, r1);
    return 0;
  });
  return 0;
}

// The lab's bookkeeping of a.steps steps from a.t: with a.family < 0, one step's (the
// optimizer already ran; with a.function, f and ∇f are evaluated first, at θ_t); else fused:
// evaluate, step the family with *opt (a group of one (N, d) parameter: θ) and track, block by
// block. Returns the number of rows frozen, or −1 (nothing done) for arguments it refuses.
extern "C" int64_t descend_lab_step(const Args* opt, const LabArgs* a) {
  if (!known_function(*a) || a->family > 13 || a->steps < 1 || a->rows < 1) return -1;
  if (a->family < 0 ? a->steps != 1 : (opt == nullptr || opt->n != 1)) return -1;
  // cautious mask (i14kc): its scale is per tensor, so its runs never share one (N, d) θ
  // (the lab steps each alone); the block-by-block fused step cannot count before it writes.
  if (a->family >= 0 && opt->cautious) return -1;
  return a->dtype == 1 ? lab_run<double>(opt, *a) : lab_run<float>(opt, *a);
}

// The landscape ids the library knows: its name, or "" (for the loader's consistency check).
extern "C" const char* descend_landscape_name(int32_t id) {
  return descend::land::name_of(id);
}

extern "C" int64_t descend_lab_args_size() { return static_cast<int64_t>(sizeof(LabArgs)); }
