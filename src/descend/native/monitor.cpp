// descend.monitor's sampled step in one pass: per parameter, the sums the monitor writes, and
// the optimizer state at the sampled coordinates.
//
// Called from descend/monitor/fused.py, which hands over only addresses and sizes that
// descend_check (check.cpp) has just read from the live tensors in the same call: every
// tensor a float32, contiguous, strided CPU tensor of the expected size lying inside its
// storage. Nothing here is cached between calls.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

inline const float* at(const int64_t* addresses, int64_t j) {
  return addresses == nullptr ? nullptr : reinterpret_cast<const float*>(addresses[j]);
}

}  // namespace

namespace {

// The nine sums of one parameter (see descend_monitor_sums), in one sequential pass with
// float64 accumulators (a fixed order: deterministic). Not an `omp simd` loop: measured on the
// digits MLP, the vectorised reduction was no faster (17 µs against 15 for 7,510 entries; the
// float → double conversions and nine accumulators bound it), and gcc kept an unvectorised
// copy of it.
template <bool kMomentum>
void param_sums(int64_t n, const float* __restrict__ th, const float* __restrict__ g,
                const float* __restrict__ m, const float* __restrict__ b,
                const float* __restrict__ p, double* __restrict__ o) {
  double w2 = 0, gp2 = 0, g2 = 0, u2 = 0, m2 = 0, mg = 0;
  int64_t opposed = 0, nonzero = 0, nonfinite = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float raw = g[i];
    const bool finite = raw - raw == 0.0f;  // false for ±inf and NaN
    const float gi = finite ? raw : 0.0f;
    const float uf = b[i] - th[i];  // as torch: the float32 difference
    const double bi = b[i], pi = p[i], gd = gi, u = uf;
    w2 += bi * bi;
    gp2 += pi * pi;
    g2 += gd * gd;
    u2 += u * u;
    opposed += uf * gi < 0.0f;
    nonzero += gi != 0.0f;
    nonfinite += !finite;
    if (kMomentum) {
      const double mi = m[i];
      m2 += mi * mi;
      mg += mi * gd;
    }
  }
  o[0] = w2;
  o[1] = gp2;
  o[2] = g2;
  o[3] = u2;
  o[4] = m2;
  o[5] = mg;
  o[6] = static_cast<double>(opposed);
  o[7] = static_cast<double>(nonzero);
  o[8] = static_cast<double>(nonfinite);
}

}  // namespace

namespace {

// The sums of descend_monitor_sums over resolved addresses (offset: n + 1 prefix sums).
void all_sums(int64_t n, const int64_t* numel, const int64_t* offset, const int64_t* theta,
              const int64_t* grad, const int64_t* momentum, const float* before,
              const float* preclip, double* out) {
#pragma omp parallel for schedule(dynamic) if (offset[n] > (int64_t{1} << 18))
  for (int64_t j = 0; j < n; ++j) {
    const float* m = at(momentum, j);
    const float* b = before + offset[j];
    const float* p = preclip + offset[j];
    if (m != nullptr)
      param_sums<true>(numel[j], at(theta, j), at(grad, j), m, b, p, out + 9 * j);
    else
      param_sums<false>(numel[j], at(theta, j), at(grad, j), nullptr, b, p, out + 9 * j);
  }
}

// The gather of descend_monitor_gather over resolved addresses; 1 if an index is outside
// [0, offset[n]).
int32_t all_gather(int64_t n, const int64_t* offset, int64_t keys, const int64_t* sources,
                   int64_t count, const int64_t* index, float* out) {
  std::vector<int64_t> owner(count);
  for (int64_t s = 0; s < count; ++s) {
    const int64_t c = index[s];
    if (c < 0 || c >= offset[n]) return 1;
    int64_t lo = 0, hi = n;  // the last j with offset[j] <= c
    while (hi - lo > 1) {
      const int64_t mid = (lo + hi) / 2;
      if (offset[mid] <= c) lo = mid; else hi = mid;
    }
    owner[s] = lo;
  }
  for (int64_t k = 0; k < keys; ++k) {
    float* o = out + k * count;
    for (int64_t s = 0; s < count; ++s) {
      const int64_t j = owner[s];
      const float* src = at(sources + k * n, j);
      o[s] = src == nullptr ? NAN : src[index[s] - offset[j]];
    }
  }
  return 0;
}

// offset[0..n]: the prefix sums of numel; false if a size is negative.
bool offsets(int64_t n, const int64_t* numel, std::vector<int64_t>& offset) {
  offset.assign(n + 1, 0);
  for (int64_t j = 0; j < n; ++j) {
    if (numel[j] < 0) return false;
    offset[j + 1] = offset[j] + numel[j];
  }
  return true;
}

}  // namespace

// Per parameter j (numel[j] coordinates at theta[j], grad[j], momentum[j]; before and preclip
// laid end to end, parameter after parameter), nine float64 sums into out[9j .. 9j + 8]:
//   ‖θ_before‖², ‖g_preclip‖², ‖g‖², ‖u‖², ‖m‖², m·g, #(u·g < 0), #(g ≠ 0), #(g non-finite)
// with u = θ_before − θ and the non-finite entries of g counted, then taken as 0 everywhere
// else. momentum may be null (no momentum), or hold 0 for a parameter without one.
extern "C" int32_t descend_monitor_sums(int64_t n, const int64_t* numel, const int64_t* theta,
                                        const int64_t* grad, const int64_t* momentum,
                                        const float* before, const float* preclip, double* out) {
  std::vector<int64_t> offset;
  if (!offsets(n, numel, offset)) return 1;
  all_sums(n, numel, offset.data(), theta, grad, momentum, before, preclip, out);
  return 0;
}

// out[k × count + s] = the entry at coordinate index[s] (of all parameters laid end to end)
// of sources[k × n + j], j the parameter holding it; NaN where that address is 0 (a
// parameter without this state). 1, and nothing written, if an index is outside
// [0, Σ numel).
extern "C" int32_t descend_monitor_gather(int64_t n, const int64_t* numel, int64_t keys,
                                          const int64_t* sources, int64_t count,
                                          const int64_t* index, float* out) {
  std::vector<int64_t> offset;
  if (!offsets(n, numel, offset)) return 1;
  return all_gather(n, offset.data(), keys, sources, count, index, out);
}

// One sampled step's read (descend.monitor.fused.Reader): the sums of descend_monitor_sums
// and the gather of descend_monitor_gather in one call, over the tensors descend_check has
// just read in the same Python call (their addresses and sizes). Each role names its tensor
// by its index among the checked ones; every index and every size is checked here again
// (1, and nothing written, on any mismatch).
struct MonitorRead {
  int64_t n;                // parameters
  const int64_t* numel;     // their sizes
  int64_t count;            // tensors checked
  const int64_t* ptrs;      // their addresses (descend_check's out_ptr)
  const int64_t* sizes;     // their sizes as checked (out_numel)
  const int64_t* theta;     // per parameter: the index of θ among the checked tensors
  const int64_t* grad;      // per parameter: of its gradient
  const int64_t* momentum;  // per parameter: of its momentum buffer, or -1 (none)
  int64_t before;           // of θ before the step, all parameters end to end
  int64_t preclip;          // of the gradients before clipping, end to end
  int64_t keys;             // state sources gathered
  const int64_t* sources;   // keys × n: the index of each parameter's source, or -1 (NaN)
  int64_t samples;          // sampled coordinates
  const int64_t* index;     // their coordinates (all parameters end to end)
  double* sums;             // out: n × 9
  float* gathered;          // out: keys × samples
};

extern "C" int32_t descend_monitor_read(const MonitorRead* a) {
  const int64_t n = a->n;
  if (n < 0 || a->keys < 0 || a->samples < 0 || a->count < 0) return 1;
  std::vector<int64_t> offset;
  if (!offsets(n, a->numel, offset)) return 1;
  // the address of tensor i if it holds `want` entries, else 0 (the role is refused)
  auto resolve = [a](int64_t i, int64_t want, bool optional, int64_t* out) {
    if (optional && i == -1) {
      *out = 0;
      return true;
    }
    if (i < 0 || i >= a->count || a->sizes[i] != want) return false;
    *out = a->ptrs[i];
    return want == 0 || *out != 0;
  };
  std::vector<int64_t> theta(n), grad(n), momentum(n), sources(a->keys * n);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t len = a->numel[j];
    if (!resolve(a->theta[j], len, false, &theta[j]) ||
        !resolve(a->grad[j], len, false, &grad[j]) ||
        !resolve(a->momentum[j], len, true, &momentum[j]))
      return 1;
    for (int64_t k = 0; k < a->keys; ++k)
      if (!resolve(a->sources[k * n + j], len, true, &sources[k * n + j])) return 1;
  }
  int64_t before = 0, preclip = 0;
  if (!resolve(a->before, offset[n], false, &before) ||
      !resolve(a->preclip, offset[n], false, &preclip))
    return 1;
  for (int64_t s = 0; s < a->samples; ++s)
    if (a->index[s] < 0 || a->index[s] >= offset[n]) return 1;
  all_sums(n, a->numel, offset.data(), theta.data(), grad.data(), momentum.data(),
           reinterpret_cast<const float*>(before), reinterpret_cast<const float*>(preclip),
           a->sums);
  return all_gather(n, offset.data(), a->keys, sources.data(), a->samples, a->index,
                    a->gathered);
}

// Quantiles qs[0..nq) (ascending, in [0, 1]) of each row r of data — the entries
// data[start[r] .. start[r] + count[r]) — over its finite entries, by linear interpolation
// between order statistics (numpy's and torch's default), into out[nq·r ..]; NaN for a row
// without finite entries. The rows are reordered in place (data is the caller's scratch).
// 1, and nothing written, if a row lies outside [0, total) or a q outside [0, 1].
extern "C" int32_t descend_monitor_quantiles(int64_t rows, const int64_t* start,
                                             const int64_t* count, int64_t total, float* data,
                                             int64_t nq, const double* qs, double* out) {
  for (int64_t r = 0; r < rows; ++r)
    if (start[r] < 0 || count[r] < 0 || start[r] > total || count[r] > total - start[r]) return 1;
  for (int64_t k = 0; k < nq; ++k)
    if (!(qs[k] >= 0.0 && qs[k] <= 1.0) || (k > 0 && qs[k] < qs[k - 1])) return 1;
  for (int64_t r = 0; r < rows; ++r) {
    float* a = data + start[r];
    int64_t n = 0;  // the finite entries, moved to the front
    for (int64_t i = 0; i < count[r]; ++i)
      if (a[i] - a[i] == 0.0f) a[n++] = a[i];
    double* o = out + nq * r;
    int64_t lo = 0;  // entries before lo are in their sorted places
    for (int64_t k = 0; k < nq; ++k) {
      if (n == 0) {
        o[k] = NAN;
        continue;
      }
      const double p = qs[k] * static_cast<double>(n - 1);
      int64_t i = static_cast<int64_t>(std::floor(p));
      if (i > n - 1) i = n - 1;
      if (i >= lo) {
        std::nth_element(a + lo, a + i, a + n);
        lo = i + 1;
      }
      double x = a[i];
      if (i + 1 < n && p > static_cast<double>(i)) {  // the next order statistic: the least
        const float next = *std::min_element(a + i + 1, a + n);  // entry after rank i
        x += (static_cast<double>(next) - x) * (p - static_cast<double>(i));
      }
      o[k] = x;
    }
  }
  return 0;
}

// sizeof(MonitorRead), which descend.monitor.fused compares with its ctypes mirror.
extern "C" int64_t descend_monitor_read_args_size() { return sizeof(MonitorRead); }
