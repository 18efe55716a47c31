// descend fast path, CPU entry points: one call per (param group, dtype) per step.
//
// The drivers (drivers.h) prepare each family's step and run its per-element loop
// (kernels.h) over the group's tensors with parallel_ranges: one OpenMP region over all the
// tensors as one virtual flat buffer.
//
// Plain C ABI (called through ctypes): no torch headers, so the build is one short g++ call.
#include "drivers.h"

namespace {

using descend::drv::Args;
using descend::drv::parallel_ranges;

// ------------------------------------------------------------------------ all finite? ----
template <typename T>
DESCEND_RANGE bool finite_range(const T* __restrict__ x, int64_t b, int64_t e) {
  // x − x is 0 for finite x and NaN for ±inf and NaN: one compare per element, vectorised.
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = b; j < e; ++j) acc += x[j] - x[j];
  return acc == 0;
}

template <typename T>
bool all_finite(const Args& a) {
  int bad = 0;
  parallel_ranges(a, [&](int64_t i, int64_t b, int64_t e) {
    if (!finite_range<T>(static_cast<const T*>(a.grad[i]), b, e)) {
#pragma omp atomic write
      bad = 1;
    }
  });
  return bad == 0;
}

}  // namespace

// Each family over the group's tensors, one OpenMP region (parallel_ranges).
#define DESCEND_ENTRY(name)                                                      \
  extern "C" void descend_##name(const Args* a) {                                \
    auto runner = [a](auto&& body) { parallel_ranges(*a, body); };               \
    if (a->dtype == 1)                                                           \
      descend::drv::name<double>(*a, runner);                                    \
    else                                                                         \
      descend::drv::name<float>(*a, runner);                                     \
  }

DESCEND_ENTRY(sgd)
DESCEND_ENTRY(adagrad)
DESCEND_ENTRY(rmsprop)
DESCEND_ENTRY(adam)
DESCEND_ENTRY(nadam)
DESCEND_ENTRY(lion)
// AdEMAMix, Schedule-Free (issue #14)
DESCEND_ENTRY(ademamix)
DESCEND_ENTRY(schedule_free)
// RAdam, Adamax, ADOPT (issue #14)
DESCEND_ENTRY(radam)
DESCEND_ENTRY(adamax)
DESCEND_ENTRY(adopt)
// Adadelta, Rprop, ASGD (issue #14)
DESCEND_ENTRY(adadelta)
DESCEND_ENTRY(rprop)
DESCEND_ENTRY(asgd)

extern "C" int descend_all_finite(const Args* a) {
  return a->dtype == 1 ? all_finite<double>(*a) : all_finite<float>(*a);
}

extern "C" int descend_max_threads() { return omp_get_max_threads(); }

// The layout check the loader runs: Python and C++ must agree on sizeof(Args).
extern "C" int64_t descend_args_size() { return static_cast<int64_t>(sizeof(Args)); }
