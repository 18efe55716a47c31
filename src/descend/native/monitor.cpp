// descend.monitor's sampled step in one pass: per parameter, the sums the monitor writes, and
// the optimizer state at the sampled coordinates.
//
// Called from descend/monitor/fused.py, which hands over only addresses and sizes that
// descend_check (check.cpp) has just read from the live tensors in the same call: every
// tensor a float32, contiguous, strided CPU tensor of the expected size lying inside its
// storage. Nothing here is cached between calls.
//
// Two places have a path chosen at compile time from the CPU the library is built for
// (-march=native): gather_digits (the radix selection of the quantiles) compresses sixteen
// keys at a time with AVX-512, and Crc32c (the TensorBoard records' checksums) uses the CPU's
// crc32 instruction (SSE 4.2, ARMv8's CRC). Their portable code (a scalar loop, a table) is
// compiled in every build, and descend_monitor_set_portable selects it at run time even
// where the fast path is compiled, so that both can be tested on one machine
// (tests/test_monitor_paths.py); descend_monitor_paths says which one each place takes now,
// and which code ran there since descend_monitor_clear_taken.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif
#if defined(__SSE4_2__) && defined(__x86_64__)
#include <nmmintrin.h>
#elif defined(__ARM_FEATURE_CRC32) && defined(__aarch64__)
#include <arm_acle.h>
#endif

#if defined(__AVX512F__)
#define DESCEND_SIMD_GATHER 1  // gather_digits' AVX-512 compress
#endif
#if (defined(__SSE4_2__) && defined(__x86_64__)) || \
    (defined(__ARM_FEATURE_CRC32) && defined(__aarch64__))
#define DESCEND_HARDWARE_CRC 1  // Crc32c's crc32 instruction
#endif

namespace {

// The portable-paths switch (descend_monitor_set_portable): 0, the default, each place takes
// its fast path where the build has it; 1, its portable code even there. Process-wide (every
// thread, every monitor), meant for tests and for comparing the paths. Read once by each
// top-level call that uses it (descend_monitor_events, descend_monitor_rows,
// descend_monitor_quantiles_radix) and handed down as a bool, so the loops test nothing and a
// call keeps the paths it started with.
std::atomic<int32_t> portable_switch{0};

#if defined(DESCEND_SIMD_GATHER)
constexpr bool kSimdGatherBuilt = true;
#else
constexpr bool kSimdGatherBuilt = false;
#endif
#if defined(DESCEND_HARDWARE_CRC)
constexpr bool kHardwareCrcBuilt = true;
#else
constexpr bool kHardwareCrcBuilt = false;
#endif

inline bool portable_now() { return portable_switch.load(std::memory_order_relaxed) != 0; }
inline bool simd_gather_now() { return kSimdGatherBuilt && !portable_now(); }
inline bool hardware_crc_now() { return kHardwareCrcBuilt && !portable_now(); }

// The paths taken since the record was last cleared (descend_monitor_paths' bits 32 .. 256),
// marked where the code runs (gather_digits, Crc32c): what ran, not what was asked for. Never
// read by the kernels; a bit already set costs a load and a predictable branch.
enum Taken : int32_t {
  kTakenSimdGather = 32,  // gather_digits' AVX-512 body (sixteen keys at a time) ran
  kTakenScalarGather = 64,  // gather_digits ran without simd (the portable code alone)
  kTakenHardwareCrc = 128,  // Crc32c by the crc32 instruction
  kTakenTableCrc = 256,  // Crc32c by the table alone
};
std::atomic<int32_t> taken{0};

inline void mark(Taken bit) {
  if (!(taken.load(std::memory_order_relaxed) & bit))
    taken.fetch_or(bit, std::memory_order_relaxed);
}

}  // namespace

// The paths of the monitor's kernels, as bit flags: 1 the AVX-512 gather is compiled, 2 it is
// taken now (compiled, and the portable switch off), 4 the crc32 instruction is compiled, 8
// it is taken now, 16 the portable switch is on (without 2, or 8, the scalar gather, or the
// table CRC, runs); then what ran since the record was cleared (descend_monitor_clear_taken):
// 32 the AVX-512 gather, 64 the scalar gather alone, 128 the crc32 instruction, 256 the table.
extern "C" int32_t descend_monitor_paths() {
  const bool on = portable_now();
  return (kSimdGatherBuilt ? 1 : 0) | (kSimdGatherBuilt && !on ? 2 : 0) |
         (kHardwareCrcBuilt ? 4 : 0) | (kHardwareCrcBuilt && !on ? 8 : 0) | (on ? 16 : 0) |
         taken.load(std::memory_order_relaxed);
}

// Clears the record of the paths taken (descend_monitor_paths' bits 32 .. 256).
extern "C" void descend_monitor_clear_taken() { taken.store(0, std::memory_order_relaxed); }

// Sets the portable-paths switch: on = 1, the scalar gather and the table CRC even where the
// fast paths are compiled; 0, the default, the fast paths where compiled. 0, or 1 and nothing
// changed where on is neither 0 nor 1.
extern "C" int32_t descend_monitor_set_portable(int32_t on) {
  if (on != 0 && on != 1) return 1;
  portable_switch.store(on, std::memory_order_relaxed);
  return 0;
}

namespace {

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

namespace {

inline uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// Order-preserving unsigned key of a finite float (negative values reversed).
inline uint32_t order_key(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

constexpr int kBucketBits = 11;  // first-level buckets of the selection: the key's top bits
constexpr int64_t kRadixFrom = 4096;  // shorter rows select by multi_select alone (measured:
// a sampled row of 2,048 v̂ of the digits MLP, ~7 µs against ~27 through the histogram)

// Puts the entries of a[lo..hi) of ranks r[0..k) (ascending, distinct, inside [lo, hi)) in
// their sorted places: a rank at either end of the range by one scan for the least or the
// greatest entry (the pairs i, i + 1 of an interpolation), else nth_element at the middle
// rank and the same on each side of it, so that each pass works on a shrinking range.
void multi_select(float* a, int64_t lo, int64_t hi, const int64_t* r, size_t k) {
  while (k > 0) {
    if (r[0] == lo) {
      std::iter_swap(a + lo, std::min_element(a + lo, a + hi));
      ++lo, ++r, --k;
    } else if (r[k - 1] == hi - 1) {
      std::iter_swap(a + hi - 1, std::max_element(a + lo, a + hi));
      --hi, --k;
    } else {
      const size_t m = k / 2;
      std::nth_element(a + lo, a + r[m], a + hi);
      multi_select(a, lo, r[m], r, m);
      lo = r[m] + 1;
      r += m + 1;
      k -= m + 1;
    }
  }
}

// The entries of a[0..n) at the sorted ranks `ranks` (ascending), into `out`, reordering a:
// one histogram of the keys' top bits finds the bucket of each rank, one pass moves those
// buckets' entries to the front, and nth_element works inside them only. Equal values give
// the same order statistics as a full sort (ties are equal floats, except −0 and +0, which
// compare equal as floats and are returned as one of them).
// The order statistics the quantiles qs[0..nq) of n finite entries interpolate between: for
// each q, ranks i = ⌊q·(n − 1)⌋ and i + 1 (capped at n − 1), each rank once, ascending.
inline void quantile_ranks(int64_t nq, const double* qs, int64_t n, std::vector<int64_t>& ranks) {
  ranks.clear();
  for (int64_t k = 0; k < nq; ++k) {
    const double p = qs[k] * static_cast<double>(n - 1);
    const int64_t i = std::min(static_cast<int64_t>(std::floor(p)), n - 1);
    for (const int64_t x : {i, std::min(i + 1, n - 1)})
      if (ranks.empty() || ranks.back() < x) ranks.push_back(x);
  }
}

void select_ranks(float* a, int64_t n, const std::vector<int64_t>& ranks, std::vector<float>& out) {
  out.resize(ranks.size());
  if (n < kRadixFrom) {
    multi_select(a, 0, n, ranks.data(), ranks.size());
    for (size_t k = 0; k < ranks.size(); ++k) out[k] = a[ranks[k]];
    return;
  }
  constexpr int64_t kBuckets = int64_t{1} << kBucketBits;
  std::vector<int64_t> start(kBuckets + 1, 0);  // entries in the buckets before each
  std::vector<uint32_t> histogram(kBuckets, 0);
  for (int64_t i = 0; i < n; ++i) ++histogram[order_key(a[i]) >> (32 - kBucketBits)];
  for (int64_t b = 0; b < kBuckets; ++b) start[b + 1] = start[b] + histogram[b];
  // the buckets holding a wanted rank, in order (the ranks are ascending)
  std::vector<int64_t> wanted;
  for (const int64_t r : ranks) {
    const int64_t b = std::upper_bound(start.begin(), start.end(), r) - start.begin() - 1;
    if (wanted.empty() || wanted.back() != b) wanted.push_back(b);
  }
  // move the wanted buckets' entries to the front, bucket after bucket (a stable partition
  // is not needed: within a bucket only the values matter)
  std::vector<int64_t> slot(wanted.size());
  int64_t front = 0;
  for (size_t w = 0; w < wanted.size(); ++w) {
    slot[w] = front;
    front += start[wanted[w] + 1] - start[wanted[w]];
  }
  std::vector<float> picked(front);
  std::vector<int64_t> fill = slot;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = order_key(a[i]) >> (32 - kBucketBits);
    for (size_t w = 0; w < wanted.size(); ++w)
      if (wanted[w] == b) {
        picked[fill[w]++] = a[i];
        break;
      }
  }
  size_t w = 0;
  int64_t lo = 0;  // within the current bucket: entries before lo are in sorted place
  for (size_t k = 0; k < ranks.size(); ++k) {
    const int64_t r = ranks[k];
    const int64_t b = std::upper_bound(start.begin(), start.end(), r) - start.begin() - 1;
    if (wanted[w] != b) {
      ++w;
      lo = 0;
    }
    float* bucket = picked.data() + slot[w];
    const int64_t size = start[b + 1] - start[b];
    const int64_t local = r - start[b];
    if (local >= lo) {
      std::nth_element(bucket + lo, bucket + local, bucket + size);
      lo = local + 1;
    }
    out[k] = bucket[local];
  }
}

// x + (y − x)·f with the product rounded before the sum, as Python computes it
// (stats._interpolate, flat.row_quantiles): -march=native would otherwise fuse it into one
// fma, an ulp away from the torch path's quantiles now and then.
__attribute__((noinline, optimize("fp-contract=off"))) double interpolate(double x, double y,
                                                                           double f) {
  const double step = (y - x) * f;
  return x + step;
}

// o[k] = quantile qs[k] of n entries whose order statistic of rank r is value(r): numpy's
// linear interpolation between ranks ⌊q(n − 1)⌋ and the next (quantile_ranks' ranks).
template <typename Value>
void interpolated(int64_t nq, const double* qs, int64_t n, Value value, double* o) {
  for (int64_t k = 0; k < nq; ++k) {
    const double p = qs[k] * static_cast<double>(n - 1);
    const int64_t i = std::min(static_cast<int64_t>(std::floor(p)), n - 1);
    double x = value(i);
    if (i + 1 < n && p > static_cast<double>(i))
      x = interpolate(x, value(i + 1), p - static_cast<double>(i));
    o[k] = x;
  }
}

}  // namespace

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
  std::vector<int64_t> ranks;
  std::vector<float> values;
  for (int64_t r = 0; r < rows; ++r) {
    float* a = data + start[r];
    int64_t n = 0;  // the finite entries, moved to the front
    for (int64_t i = 0; i < count[r]; ++i)
      if (a[i] - a[i] == 0.0f) a[n++] = a[i];
    double* o = out + nq * r;
    if (n == 0) {
      for (int64_t k = 0; k < nq; ++k) o[k] = NAN;
      continue;
    }
    quantile_ranks(nq, qs, n, ranks);
    select_ranks(a, n, ranks, values);
    auto value = [&](int64_t x) {
      return static_cast<double>(values[std::lower_bound(ranks.begin(), ranks.end(), x) - ranks.begin()]);
    };
    interpolated(nq, qs, n, value, o);
  }
  return 0;
}

namespace {

// CRC-32C (Castagnoli), reflected: TFRecord's checksum. With hardware, the CPU's crc32
// instruction where the build targets one (SSE 4.2 on x86-64, ARMv8's CRC extension: 8 bytes
// a step, the same polynomial 0x82F63B78 reflected); else (or without hardware) a table a
// byte at a time; the same value. Marks the path taken (once per call).
struct Crc32c {
  uint32_t table[256];
  Crc32c() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1u) ? 0x82F63B78u : 0u);
      table[i] = c;
    }
  }
  uint32_t operator()(const uint8_t* p, int64_t n, bool hardware) const {
    uint32_t c = 0xFFFFFFFFu;
    int64_t i = 0;
#if defined(__SSE4_2__) && defined(__x86_64__)
    if (hardware) {
      uint64_t wide = c;
      for (; i + 8 <= n; i += 8) {
        uint64_t word;
        std::memcpy(&word, p + i, 8);
        wide = _mm_crc32_u64(wide, word);
      }
      c = static_cast<uint32_t>(wide);
      for (; i < n; ++i) c = _mm_crc32_u8(c, p[i]);
      mark(kTakenHardwareCrc);
    }
#elif defined(__ARM_FEATURE_CRC32) && defined(__aarch64__)
    if (hardware) {
      for (; i + 8 <= n; i += 8) {
        uint64_t word;
        std::memcpy(&word, p + i, 8);
        c = __crc32cd(c, word);
      }
      for (; i < n; ++i) c = __crc32cb(c, p[i]);
      mark(kTakenHardwareCrc);
    }
#else
    (void)hardware;
#endif
    if (!hardware) mark(kTakenTableCrc);
    for (; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
  }
};

const Crc32c crc32c;

inline uint32_t masked_crc(const uint8_t* p, int64_t n, bool hardware) {
  const uint32_t x = crc32c(p, n, hardware);
  return ((x >> 15) | (x << 17)) + 0xA282EAD8u;
}

}  // namespace

// TensorBoard scalar events, framed as TFRecords, for descend.monitor.sinks.TensorBoard:
// row r is Event(wall_time, step[r], Summary(value=[Value(tag, simple_value)…])) with the
// values values[first[r] .. first[r + 1]) under the tags tag[first[r] ..], each tag given as
// its encoded Value prefix prefix[off[t] .. off[t + 1]) (field 1 and the tag, then the key of
// field 2), the value as float32 (a cast as CPython's struct: ±inf beyond float32); the same
// bytes as sinks.tf_record(sinks.scalar_event(...)). Written into out (capacity cap): 0 and
// *written, or 1 (nothing usable) if a tag or range is outside its array (items values and
// tags, prefix bytes), out is too small, or the machine is not little-endian. The checksums
// take the crc32 instruction or the table as the portable switch says at the call's start.
extern "C" int32_t descend_monitor_events(int64_t rows, double wall_time, const int64_t* step,
                                          const int64_t* first, int64_t items, const int64_t* tag,
                                          const double* values, int64_t tags,
                                          const int64_t* off, int64_t bytes,
                                          const uint8_t* prefix, int64_t cap, uint8_t* out,
                                          int64_t* written) {
  *written = 0;
  const bool hardware = hardware_crc_now();
  const uint16_t probe = 1;
  if (*reinterpret_cast<const uint8_t*>(&probe) != 1) return 1;
  if (tags < 0 || off[0] != 0 || off[tags] > bytes) return 1;
  for (int64_t t = 0; t < tags; ++t)
    if (off[t + 1] < off[t]) return 1;
  if (rows < 0 || first[0] != 0 || first[rows] > items) return 1;
  auto varint_size = [](uint64_t v) {
    int64_t k = 1;
    while (v >= 0x80) v >>= 7, ++k;
    return k;
  };
  auto put_varint_at = [](uint8_t* o, uint64_t v) {
    while (v >= 0x80) *o++ = static_cast<uint8_t>(v | 0x80), v >>= 7;
    *o++ = static_cast<uint8_t>(v);
    return o;
  };
  int64_t at = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (first[r + 1] < first[r]) return 1;
    int64_t body = 0;  // each value: its tag's prefix and the 4 bytes of the float
    for (int64_t i = first[r]; i < first[r + 1]; ++i) {
      const int64_t t = tag[i];
      if (t < 0 || t >= tags) return 1;
      body += off[t + 1] - off[t] + 4;
    }
    const uint64_t s = static_cast<uint64_t>(step[r]);
    const int64_t size = 9 + (s != 0 ? 1 + varint_size(s) : 0) + 1 +
                         varint_size(static_cast<uint64_t>(body)) + body;
    if (size + 16 > cap - at) return 1;
    uint8_t* o = out + at;
    const uint64_t length = static_cast<uint64_t>(size);
    std::memcpy(o, &length, 8);
    const uint32_t head_crc = masked_crc(o, 8, hardware);
    std::memcpy(o + 8, &head_crc, 4);
    uint8_t* e = o + 12;  // the event
    *e++ = 0x09;
    std::memcpy(e, &wall_time, 8);
    e += 8;
    if (s != 0) {
      *e++ = 0x10;
      e = put_varint_at(e, s);
    }
    *e++ = 0x2a;
    e = put_varint_at(e, static_cast<uint64_t>(body));
    for (int64_t i = first[r]; i < first[r + 1]; ++i) {
      const int64_t t = tag[i];
      const int64_t length = off[t + 1] - off[t];
      if (length > 0) std::memcpy(e, prefix + off[t], static_cast<size_t>(length));  // (no
      e += length;  // memcpy from prefix where every prefix is empty: it may then be null)
      const float f = static_cast<float>(values[i]);
      std::memcpy(e, &f, 4);
      e += 4;
    }
    const uint32_t data_crc = masked_crc(o + 12, size, hardware);
    std::memcpy(o + 12 + size, &data_crc, 4);
    at += size + 16;
  }
  *written = at;
  return 0;
}

// The per-coordinate rates of descend.monitor at the sampled coordinates, the float32
// arithmetic of descend.monitor.flat.state_rates (numpy on float32 rows, a Python float
// rounded to float32 before each operation) in the same order, so the rows are bit for bit
// numpy's. Per group g, RATE_FIELDS doubles of program[RATE_FIELDS·g ..]:
//   0 v_src   row of gathered read for v̂ (-1: no v̂)       1 v_div   divide it by (float)v_c
//   2 v_c                                                  3 e_src   row for the rate (-1: none)
//   4 e_center row subtracted squared (RMSprop centered, -1: none)
//   5 e_div   divide by (float)e_c                         6 e_c
//   7 inside  ε inside the root                            8 lr      9 c1      10 eps
//   v̂ = x / v_c;   y = x − a² (centered), y = y / e_c;
//   rate = lr / (c1 · (√y + ε))  or  lr / (c1 · √(y + ε))  (inside)
// gathered: keys × samples (float32); group[s]: the group of sampled coordinate s, or -1;
// out: 2 × samples (v̂ then the rate), NaN where the group has none. 1, and nothing written,
// if a row index is not an integer in [-1, keys), a flag not 0 or 1, or a group outside
// [-1, groups).
namespace {
constexpr int64_t kRateFields = 11;

bool row_index(double x, int64_t keys, int64_t* out) {
  if (!(x >= -1.0 && x < static_cast<double>(keys)) || x != std::floor(x)) return false;
  *out = static_cast<int64_t>(x);
  return true;
}

bool flag(double x, bool* out) {
  if (x != 0.0 && x != 1.0) return false;
  *out = x == 1.0;
  return true;
}

struct RateProgram {
  int64_t v_src, e_src, e_center;
  bool v_div, e_div, inside;
  float v_c, e_c, lr, c1, eps;
};

// The rate of each of count coordinates, e = lr / (c1·(√y + ε)) (or lr / (c1·√(y + ε)),
// Inside) of y = x (− a², Center) (/ c, Div), in one vectorised pass per program shape: each
// operation one float32 rounding, as numpy does it, none contracted into a fused
// multiply-add (fp-contract off for this function alone).
template <bool Center, bool Div, bool Inside>
__attribute__((noinline, optimize("fp-contract=off"))) void rate_pass(
    int64_t count, const float* __restrict__ x, const float* __restrict__ a, float c, float lr,
    float c1, float eps, float* __restrict__ out) {
  for (int64_t s = 0; s < count; ++s) {
    float y = x[s];
    if (Center) y = y - a[s] * a[s];
    if (Div) y = y / c;
    out[s] = Inside ? lr / (c1 * std::sqrt(y + eps)) : lr / (c1 * (std::sqrt(y) + eps));
  }
}

template <bool Center, bool Div>
void rate_pass(bool inside, int64_t count, const float* x, const float* a, float c, float lr,
               float c1, float eps, float* out) {
  if (inside)
    rate_pass<Center, Div, true>(count, x, a, c, lr, c1, eps, out);
  else
    rate_pass<Center, Div, false>(count, x, a, c, lr, c1, eps, out);
}

// One group's run of sampled coordinates [0, count) (gathered rows offset to its start): v̂
// (its source, divided or not), then the rate by rate_pass — from v̂ itself where the rate
// reads the same source divided alike (the same float32 value: one division saved).
void rate_run(const RateProgram& p, int64_t count, int64_t samples, const float* gathered,
              float* __restrict__ v_out, float* __restrict__ e_out) {
  if (p.v_src < 0) {
    for (int64_t s = 0; s < count; ++s) v_out[s] = NAN;
  } else {
    const float* __restrict__ x = gathered + p.v_src * samples;
    const float c = p.v_c;
    if (p.v_div)
      for (int64_t s = 0; s < count; ++s) v_out[s] = x[s] / c;
    else
      for (int64_t s = 0; s < count; ++s) v_out[s] = x[s];
  }
  if (p.e_src < 0) {
    for (int64_t s = 0; s < count; ++s) e_out[s] = NAN;
    return;
  }
  const float* x = gathered + p.e_src * samples;
  const float* a = p.e_center >= 0 ? gathered + p.e_center * samples : nullptr;
  const float c = p.e_c, lr = p.lr, c1 = p.c1, eps = p.eps;
  if (p.e_src == p.v_src && p.e_center < 0 && p.e_div == p.v_div && (!p.e_div || c == p.v_c))
    rate_pass<false, false>(p.inside, count, v_out, a, c, lr, c1, eps, e_out);
  else if (a && p.e_div)
    rate_pass<true, true>(p.inside, count, x, a, c, lr, c1, eps, e_out);
  else if (a)
    rate_pass<true, false>(p.inside, count, x, a, c, lr, c1, eps, e_out);
  else if (p.e_div)
    rate_pass<false, true>(p.inside, count, x, a, c, lr, c1, eps, e_out);
  else
    rate_pass<false, false>(p.inside, count, x, a, c, lr, c1, eps, e_out);
}

// The runs of one group in group[0..samples): [first, end) and the group, in order (a
// single group: one run).
struct Run {
  int64_t first, end, group;
};

void group_runs(const int64_t* group, int64_t samples, std::vector<Run>& runs) {
  runs.clear();
  for (int64_t s = 0; s < samples;) {
    int64_t e = s + 1;
    while (e < samples && group[e] == group[s]) ++e;
    runs.push_back({s, e, group[s]});
    s = e;
  }
}

// Every sampled coordinate by its group's program, run after run of one group (the runs of
// group_runs, groups checked in range).
void rate_rows(const RateProgram* programs, int64_t samples, const float* gathered,
               const std::vector<Run>& runs, float* out) {
  const RateProgram none{-1, -1, -1, false, false, false, 1.0f, 1.0f, 0.0f, 1.0f, 0.0f};
  for (const Run& r : runs)
    rate_run(r.group >= 0 ? programs[r.group] : none, r.end - r.first, samples,
             gathered + r.first, out + r.first, out + samples + r.first);
}
}  // namespace

extern "C" int32_t descend_monitor_rates(int64_t groups, const double* program, int64_t keys,
                                         int64_t samples, const float* gathered,
                                         const int64_t* group, float* out) {
  if (groups < 0 || keys < 0 || samples < 0) return 1;
  std::vector<RateProgram> programs(groups);
  for (int64_t g = 0; g < groups; ++g) {
    const double* f = program + kRateFields * g;
    RateProgram& p = programs[g];
    if (!row_index(f[0], keys, &p.v_src) || !flag(f[1], &p.v_div) ||
        !row_index(f[3], keys, &p.e_src) || !row_index(f[4], keys, &p.e_center) ||
        !flag(f[5], &p.e_div) || !flag(f[7], &p.inside))
      return 1;
    p.v_c = static_cast<float>(f[2]);
    p.e_c = static_cast<float>(f[6]);
    p.lr = static_cast<float>(f[8]);
    p.c1 = static_cast<float>(f[9]);
    p.eps = static_cast<float>(f[10]);
  }
  for (int64_t s = 0; s < samples; ++s)
    if (group[s] < -1 || group[s] >= groups) return 1;
  std::vector<Run> runs;
  group_runs(group, samples, runs);
  rate_rows(programs.data(), samples, gathered, runs, out);
  return 0;
}

// The monitor's combinations of per-parameter sums (descend.monitor.stats.combine and the
// per-layer tags of Monitor._finish), in the same float64 operations in the same order
// (sums added left to right from 0, then sqrt and one division each), so the values are
// bit for bit Python's. sums: n × 9 (descend_monitor_step_read's rows); scope s adds parameters
// span[2s] .. span[2s + 1] and writes 8 values into out[8s ..]:
//   ‖g‖, ‖u‖, ‖θ‖, ‖u‖/‖θ‖, #(u·g < 0)/#(g ≠ 0), [#non-finite > 0], m·g/(‖m‖‖g‖), [‖m‖² > 0]
// (a ratio is NaN where its denominator is not > 0); with layers != 0, per parameter j
// ‖u‖/‖θ‖ and ‖g‖ into out[8·scopes + 2j ..]. 1, and nothing written, if a span is not
// inside [0, n] in order, or layers is not 0 or 1.
namespace {
inline double ratio(double a, double b) { return b > 0 ? a / b : NAN; }
}  // namespace

extern "C" int32_t descend_monitor_combine(int64_t n, const double* sums, int64_t scopes,
                                           const int64_t* span, int64_t layers, double* out) {
  if (n < 0 || scopes < 0 || (layers != 0 && layers != 1)) return 1;
  for (int64_t s = 0; s < scopes; ++s)
    if (span[2 * s] < 0 || span[2 * s] > span[2 * s + 1] || span[2 * s + 1] > n) return 1;
  for (int64_t s = 0; s < scopes; ++s) {
    double t[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j = span[2 * s]; j < span[2 * s + 1]; ++j)
      for (int k = 0; k < 9; ++k) t[k] += sums[9 * j + k];
    const double w2 = t[0], g2 = t[2], u2 = t[3], m2 = t[4], mg = t[5];
    double* o = out + 8 * s;
    o[0] = std::sqrt(g2);
    o[1] = std::sqrt(u2);
    o[2] = std::sqrt(w2);
    o[3] = ratio(std::sqrt(u2), std::sqrt(w2));
    o[4] = ratio(t[6], t[7]);
    o[5] = t[8] > 0 ? 1.0 : 0.0;
    o[6] = m2 > 0 ? ratio(mg, std::sqrt(m2 * g2)) : NAN;
    o[7] = m2 > 0 ? 1.0 : 0.0;
  }
  if (layers) {
    double* o = out + 8 * scopes;
    for (int64_t j = 0; j < n; ++j) {
      o[2 * j] = ratio(std::sqrt(sums[9 * j + 3]), std::sqrt(sums[9 * j]));
      o[2 * j + 1] = std::sqrt(sums[9 * j + 2]);
    }
  }
  return 0;
}

// The rows of all the sampled steps a flush writes, in one call (descend.monitor.core
// Monitor._native_rows): per held step p the values of its row's tags and whether each tag is
// present, from its per-parameter sums, its sources gathered at the sampled coordinates and
// its groups' rate programs, by the same float64 operations as the Python rows
// (Monitor._clip_and_noise, descend_monitor_combine, descend_monitor_rates and the
// quantiles of descend_monitor_quantiles, here selected by radix_ranks, its gather_digits
// path as the portable switch says at the call's start), so every value is bit for bit the
// Python path's over the same reads. The columns of a row (T = columns):
//   0 .. head     the caller's (each group's lr and v̂ bias correction), from lead
//   head + 0..4   ‖g‖ before clipping, micro-batches, gns_g2, gns_trace, noise_scale
//   head + 5      skipped steps (the caller's, from lead)
//   head + 6 + 7s scope s: ‖g‖, ‖u‖, ‖θ‖, update ratio, opposed fraction, non-finite,
//                 momentum cosine (present where ‖m‖² > 0)
//   then 1        clipped (present with ‖g‖ before clipping)
//   then 6s       scope s: v̂ p10 p50 p90, effective lr p10 p50 p90 (present where not NaN,
//                 the rate's where a parameter of the scope has one)
//   then 3j       with layers, parameter j: update ratio, ‖g‖, effective-lr median (present
//                 where its group has a rate)
// v̂ and the rate at the sampled coordinates come from the programs (mode 0), or are given
// (mode 1: the rows the chain's trace recorded), or there are none (mode 2: no quantiles).
// Out: present (P × T, 0 or 1) and packed, the present values of each row in column order,
// rows end to end (at most P × T). The noise-scale averages (noise[0..2), in and out) advance
// step after step. 1, and nothing written (present, packed, noise), if a size, span, part,
// group, program, code or count is out of range.
struct MonitorRows {
  int64_t rows;               // P held steps
  int64_t n;                  // parameters
  int64_t keys;               // gathered sources per step
  int64_t samples;            // sampled coordinates
  int64_t groups;             // rate programs per step (the layout's groups)
  const double* sums;         // P × n × 9 (descend_monitor_step_read's columns)
  const float* gathered;      // P × keys × samples
  const double* programs;     // P × groups × 11 (descend_monitor_rates' programs)
  const int64_t* mode;        // P: 0 v̂ and the rate by the programs, 1 given, 2 neither
  const float* given;         // P × 2 × samples: v̂ and the rate where the mode is 1
  const int64_t* given_eff;   // P × n: 1 where a parameter has a given rate (mode 1)
  const int64_t* group_of;    // samples: the group of each sampled coordinate, or -1
  const int64_t* param_group; // n: the group of each parameter
  int64_t scopes;             // ≥ 1: the whole model, then each group where several
  const int64_t* span;        // scopes × 2: parameters [first, end)
  const int64_t* part;        // scopes × 2: its sampled coordinates (start, count)
  int64_t layers;             // 0 or 1
  const int64_t* layer_part;  // n × 2: each parameter's sampled coordinates (with layers)
  const int64_t* micro;       // P × n: 0 no backward pass seen, 1 one, 2 several
  const double* micro_info;   // P × 4: k (most passes), Σ‖gᵢ‖² of the several, has it, scale
  double noise_beta;          // the averages' factor
  double unit;                // samples per micro-batch (1: in micro-batches)
  double* noise;              // 2, in and out: the averages of gns_trace and gns_g2
  int64_t head;               // the caller's columns before the native ones
  const double* lead;         // P × (head + 1) × 2: (value, present) of those and of skipped
  int64_t columns;            // T
  uint8_t* present;           // out: P × T
  double* packed;             // out: the present values, row after row
};

namespace {

// stats.noise_scale_parts with k ≥ 2, in Python's operations and order (none contracted).
__attribute__((noinline, optimize("fp-contract=off"))) void noise_parts(
    double k, double micro_sq, double total_sq, double* g2, double* trace) {
  const double small = micro_sq / k;
  const double big = total_sq / (k * k);
  *g2 = (k * big - small) / (k - 1.0);
  *trace = k * (small - big) / (k - 1.0);
}

// b·old + (1 − b)·x, both products rounded (Python's).
__attribute__((noinline, optimize("fp-contract=off"))) double average(double b, double old,
                                                                       double x) {
  const double kept = b * old;
  const double added = (1.0 - b) * x;
  return kept + added;
}

bool inside(const int64_t* pair, int64_t total) {
  return pair[0] >= 0 && pair[1] >= 0 && pair[0] <= total && pair[1] <= total - pair[0];
}

// The first digit's shift for radix_ranks over keys[0..n): the one whose 8 bits end at the
// highest bit where the keys differ (the bits above are alike in all of them: a digit
// there puts every entry in one bucket, a pass for nothing), -1 if all are one value.
int top_shift(const uint32_t* keys, int64_t n) {
  uint32_t diff = 0;
  const uint32_t k0 = n ? keys[0] : 0u;
  for (int64_t i = 0; i < n; ++i) diff |= keys[i] ^ k0;
  if (diff == 0) return -1;
  const int high = 31 - __builtin_clz(diff);
  return std::max(high - 7, 0);
}

// The scratch radix_ranks needs for n entries: 2(n + 16) a level (each holding at most n),
// at most four levels of 8 bits.
inline int64_t radix_scratch(int64_t n) { return 8 * (n + 16); }

// radix_ranks' scratch, kept by a caller across its selections: grown where too small, never
// cleared (radix_ranks reads only what it has written).
class Scratch {
 public:
  uint32_t* at_least(int64_t n) {
    if (n > size_) {
      data_.reset(new uint32_t[n]);
      size_ = n;
    }
    return data_.get();
  }

 private:
  std::unique_ptr<uint32_t[]> data_;
  int64_t size_ = 0;
};

// The entries of keys[0..n) (n ≤ 32) at the sorted ranks r[0..k) into out: each entry's
// place in the sorted order counted whole (the entries below it, and the equal ones before
// it), compare by compare without a branch, so that a bucket is sorted by a few vector
// passes instead of a comparison sort's unpredictable branches.
void rank_small(const uint32_t* keys, int64_t n, const int64_t* r, size_t k, uint32_t* out) {
  uint32_t sorted[32];
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t x = keys[i];
    int64_t p = 0;
    for (int64_t j = 0; j < i; ++j) p += keys[j] <= x;
    for (int64_t j = i + 1; j < n; ++j) p += keys[j] < x;
    sorted[p] = x;
  }
  for (size_t q = 0; q < k; ++q) out[q] = sorted[r[q]];
}

// The entries of keys[0..n) whose digit (key >> shift) & 255 is set in the 256-bit map
// wanted (8 words), in their order, into out (room for n + 16); their number. Branch-free:
// with simd (the AVX-512 build, the portable switch off), sixteen keys at a time, each one's
// bit fetched from the map by a lane permutation and the kept ones compressed to the front of
// a register that is stored whole; else (and for the last n mod 16) each key stored at the
// end of the kept ones, which grow by one where it is wanted (a chain through one register,
// not through memory). Both give the same entries in the same order. Marks the path taken
// (once per call: the AVX-512 body where it ran, the portable code where simd is off).
int64_t gather_digits(const uint32_t* keys, int64_t n, int shift, const uint32_t* wanted,
                      uint32_t* out, bool simd) {
  int64_t m = 0, i = 0;
#if defined(DESCEND_SIMD_GATHER)
  const __m512i map = _mm512_zextsi256_si512(
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wanted)));
  const __m128i by = _mm_cvtsi32_si128(shift);
  const __m512i digit = _mm512_set1_epi32(255), low = _mm512_set1_epi32(31);
  const __m512i one = _mm512_set1_epi32(1);
  const int64_t vector_end = simd ? n : 0;  // without simd, every key by the loop below
  for (; i + 16 <= vector_end; i += 16) {
    const __m512i k = _mm512_loadu_si512(keys + i);
    const __m512i d = _mm512_and_si512(_mm512_srl_epi32(k, by), digit);
    const __m512i word = _mm512_permutexvar_epi32(_mm512_srli_epi32(d, 5), map);
    const __m512i bit = _mm512_srlv_epi32(word, _mm512_and_si512(d, low));
    const __mmask16 keep = _mm512_test_epi32_mask(bit, one);
    _mm512_storeu_si512(out + m, _mm512_maskz_compress_epi32(keep, k));
    m += __builtin_popcount(static_cast<unsigned>(keep));
  }
  if (i > 0) mark(kTakenSimdGather);
#endif
  if (!simd) mark(kTakenScalarGather);
  for (; i < n; ++i) {
    const uint32_t key = keys[i], d = (key >> shift) & 255u;
    out[m] = key;
    m += (wanted[d >> 5] >> (d & 31u)) & 1u;
  }
  return m;
}

// count[d] = the entries of keys[0..n) whose digit (key >> shift) & 255 is d, counted in
// Tables histograms side by side: a run of one digit is then Tables chains of increments,
// not one chain through memory.
template <int Tables>
void histogram(const uint32_t* keys, int64_t n, int shift, uint32_t* count) {
  uint32_t part[Tables][256] = {{0}};
  int64_t i = 0;
  for (; i + Tables <= n; i += Tables)
    for (int w = 0; w < Tables; ++w) ++part[w][(keys[i + w] >> shift) & 255u];
  for (; i < n; ++i) ++part[0][(keys[i] >> shift) & 255u];
  for (int b = 0; b < 256; ++b) {
    uint32_t t = 0;
    for (int w = 0; w < Tables; ++w) t += part[w][b];
    count[b] = t;
  }
}

// The entries of keys[0..n) (order keys) at the sorted ranks r[0..k) (ascending, distinct,
// in [0, n), k ≤ 64) into out: most significant digit first, 8 bits a level from bit `shift`
// down, one histogram of the digit, then the entries of the buckets holding a wanted rank
// gathered into scratch (gather_digits; a bucket holding every entry is not copied) and
// each selected in alone, down to buckets of at most 32 entries, which are ranked whole
// (rank_small). Where several buckets are wanted, each one's entries are gathered again from
// the gathered ones (few). scratch: room for 2(n + 16) entries here, and as much again for
// each level below (radix_scratch); nothing is allocated. simd: gather_digits' path.
void radix_ranks(const uint32_t* keys, int64_t n, int shift, const int64_t* r, size_t k,
                 uint32_t* out, uint32_t* scratch, bool simd) {
  // the next digit: 8 bits lower, the last one bits 0..7 (overlapping bits this bucket's
  // entries share are harmless), then none
  const int next = shift <= 0 ? -1 : std::max(shift - 8, 0);
  if (shift < 0) {  // every bit alike: all the entries are one value
    for (size_t q = 0; q < k; ++q) out[q] = keys[0];
    return;
  }
  if (n <= 32) {
    rank_small(keys, n, r, k, out);
    return;
  }
  uint32_t count[256] = {0};
  if (n < 128)
    for (int64_t i = 0; i < n; ++i) ++count[(keys[i] >> shift) & 255u];
  else if (n < 1024)
    histogram<4>(keys, n, shift, count);
  else
    histogram<8>(keys, n, shift, count);
  uint32_t block[16];  // the entries of buckets 16j .. 16j + 15
  for (int j = 0; j < 16; ++j) {
    uint32_t t = 0;
    for (int b = 0; b < 16; ++b) t += count[16 * j + b];
    block[j] = t;
  }
  // the buckets holding a wanted rank (ascending) and their first ranks
  int64_t first[64];
  int bucket[64];
  uint32_t wanted[8] = {0};
  int w = 0;
  int64_t below = 0;  // the entries of the buckets before b
  for (size_t q = 0, b = 0; q < k; ++q) {
    while (below + count[b] <= r[q]) {  // to the bucket holding rank r[q], a block at a time
      if ((b & 15) == 0 && below + block[b >> 4] <= r[q]) {
        below += block[b >> 4];
        b += 16;
      } else {
        below += count[b++];
      }
    }
    if (count[b] == n) {  // one bucket holds every entry: the next digit, nothing copied
      radix_ranks(keys, n, next, r, k, out, scratch, simd);
      return;
    }
    if (w == 0 || bucket[w - 1] != static_cast<int>(b)) {
      bucket[w] = static_cast<int>(b);
      first[w] = below;
      wanted[b >> 5] |= 1u << (b & 31u);
      ++w;
    }
  }
  uint32_t* gathered = scratch;  // the wanted buckets' entries in their order in keys
  const int64_t m = gather_digits(keys, n, shift, wanted, gathered, simd);
  uint32_t* below_scratch = scratch + 2 * (n + 16);
  int64_t local[64];
  for (size_t q = 0, x = 0; q < k && x < static_cast<size_t>(w); ++x) {
    const int64_t size = count[bucket[x]];
    const uint32_t* entries = gathered;
    if (w > 1) {  // this bucket's entries alone, after the gathered ones
      uint32_t one[8] = {0};
      one[bucket[x] >> 5] = 1u << (bucket[x] & 31u);
      uint32_t* alone = scratch + n + 16;
      gather_digits(gathered, m, shift, one, alone, simd);
      entries = alone;
    }
    size_t e = q;
    while (e < k && r[e] < first[x] + size) ++e;
    for (size_t y = q; y < e; ++y) local[y - q] = r[y] - first[x];
    radix_ranks(entries, size, next, local, e - q, out + q, below_scratch, simd);
    q = e;
  }
}

// The keys at ranks (ascending, distinct) of keys[0..n) into picked: by radix_ranks (with
// scratch, grown here and kept by the caller across selections), or by a sort where there are
// more ranks than it holds. simd: gather_digits' path.
void pick_ranks(std::vector<uint32_t>& keys, int64_t n, const std::vector<int64_t>& ranks,
                std::vector<uint32_t>& picked, Scratch& scratch, bool simd) {
  picked.resize(ranks.size());
  if (ranks.size() > 64) {
    std::sort(keys.begin(), keys.begin() + n);
    for (size_t x = 0; x < ranks.size(); ++x) picked[x] = keys[ranks[x]];
  } else {
    radix_ranks(keys.data(), n, top_shift(keys.data(), n), ranks.data(), ranks.size(),
                picked.data(), scratch.at_least(radix_scratch(n)), simd);
  }
}

inline float from_key(uint32_t u) {
  u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// The order keys of the finite entries of a[0..count) into keys (room for count), in their
// order; their number. Without a branch per entry: a counting pass, then (all finite, the
// usual case) one vectorised pass, else each key stored at the end of the kept ones, which
// grow by one where it is finite.
int64_t finite_keys(const float* a, int64_t count, uint32_t* keys) {
  int64_t finite = 0;  // by the bits (exponent not all ones), vectorised
  for (int64_t i = 0; i < count; ++i) finite += (bits_of(a[i]) & 0x7f800000u) != 0x7f800000u;
  if (finite == count) {
    for (int64_t i = 0; i < count; ++i) keys[i] = order_key(a[i]);
    return count;
  }
  int64_t n = 0;
  for (int64_t i = 0; i < count; ++i) {
    keys[n] = order_key(a[i]);
    n += a[i] - a[i] == 0.0f;
  }
  return n;
}

// Quantiles qs[0..nq) of the finite entries of a[0..count), as descend_monitor_quantiles
// computes one row (the same ranks, the same interpolation), the order
// statistics selected by radix_ranks (simd: gather_digits' path); NaN without finite entries.
void quantile_row(const float* a, int64_t count, const double* qs, int64_t nq, double* o,
                  std::vector<uint32_t>& keys, std::vector<int64_t>& ranks,
                  std::vector<uint32_t>& picked, Scratch& scratch, bool simd) {
  keys.resize(count);
  const int64_t n = finite_keys(a, count, keys.data());
  if (n == 0) {
    for (int64_t k = 0; k < nq; ++k) o[k] = NAN;
    return;
  }
  quantile_ranks(nq, qs, n, ranks);
  pick_ranks(keys, n, ranks, picked, scratch, simd);
  auto value = [&](int64_t x) {
    return static_cast<double>(
        from_key(picked[std::lower_bound(ranks.begin(), ranks.end(), x) - ranks.begin()]));
  };
  interpolated(nq, qs, n, value, o);
}

// The rate a program gives a coordinate whose v̂ is z, where the rate's source is v̂'s and
// divided alike (see pairable): rate_run's own float32 operations on the same input, so the
// same bits.
inline float rate_of(const RateProgram& p, float z) {
  return p.inside ? p.lr / (p.c1 * std::sqrt(z + p.eps)) : p.lr / (p.c1 * (std::sqrt(z) + p.eps));
}

// A program as descend_monitor_rates reads it (false: refused there too).
bool parse_program(const double* f, int64_t keys, RateProgram* p) {
  if (!row_index(f[0], keys, &p->v_src) || !flag(f[1], &p->v_div) ||
      !row_index(f[3], keys, &p->e_src) || !row_index(f[4], keys, &p->e_center) ||
      !flag(f[5], &p->e_div) || !flag(f[7], &p->inside))
    return false;
  p->v_c = static_cast<float>(f[2]);
  p->e_c = static_cast<float>(f[6]);
  p->lr = static_cast<float>(f[8]);
  p->c1 = static_cast<float>(f[9]);
  p->eps = static_cast<float>(f[10]);
  return true;
}

// Whether a program's rate is a non-increasing function of its v̂ alone, rate_of: the same
// source read the same way (no centring), and lr ≥ 0, c1 > 0, ε ≥ 0, each operation of
// rate_of then being monotone (IEEE rounding is). The rates' order statistics are then the
// v̂ order statistics' rates taken from the other end (sorted(h(v)) = h(v sorted downward)),
// wherever every coordinate's rate is finite exactly where its v̂ is (checked per row).
bool pairable(const RateProgram& p) {
  return p.v_src >= 0 && p.e_src == p.v_src && p.e_center < 0 && p.e_div == p.v_div &&
         (!p.v_div || p.e_c == p.v_c) && p.lr >= 0.0f && p.c1 > 0.0f && p.eps >= 0.0f &&
         std::isfinite(p.lr) && std::isfinite(p.c1) && std::isfinite(p.eps);
}

// Whether a coordinate's rate e is finite and its v̂ a not, or the other way round, or a
// finite v̂ is below 0: by the bits (finite: the exponent not all ones; below 0: the sign
// set and the magnitude not 0, −0 ≥ 0), branch-free and vectorised.
__attribute__((noinline)) bool unpairable(const float* __restrict__ a,
                                          const float* __restrict__ e, int64_t count) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    const uint32_t u = bits_of(a[i]), w = bits_of(e[i]);
    const uint32_t finite = (u & 0x7f800000u) != 0x7f800000u ? 1u : 0u;
    const uint32_t rate_finite = (w & 0x7f800000u) != 0x7f800000u ? 1u : 0u;
    bad |= (finite ^ rate_finite) | (finite & (u > 0x80000000u ? 1u : 0u));
  }
  return bad != 0;
}

// quantile_row of v̂ (a) and of the rate (e) of count coordinates of one pairable program,
// in one selection of the v̂ order statistics: the rate's ranks x taken as h(v̂ at rank
// n − 1 − x). False (nothing written) where a coordinate's rate is finite and its v̂ not,
// or the other way round, or a finite v̂ is below 0: then each row is selected alone.
// simd: gather_digits' path.
bool quantile_pair(const float* a, const float* e, int64_t count, const RateProgram& prog,
                   const double* qs, int64_t nq, double* out_v, double* out_e,
                   std::vector<uint32_t>& keys, std::vector<int64_t>& ranks,
                   std::vector<uint32_t>& picked, Scratch& scratch, bool simd) {
  if (unpairable(a, e, count)) return false;
  keys.resize(count);
  const int64_t n = finite_keys(a, count, keys.data());
  if (n == 0) {
    for (int64_t k = 0; k < nq; ++k) out_v[k] = out_e[k] = NAN;
    return true;
  }
  auto at = [&](double q) {
    const double p = q * static_cast<double>(n - 1);
    return std::min(static_cast<int64_t>(std::floor(p)), n - 1);
  };
  ranks.clear();
  for (int64_t k = 0; k < nq; ++k) {
    const int64_t i = at(qs[k]);
    for (const int64_t x : {i, std::min(i + 1, n - 1)}) {
      ranks.push_back(x);
      ranks.push_back(n - 1 - x);
    }
  }
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  pick_ranks(keys, n, ranks, picked, scratch, simd);
  auto key_at = [&](int64_t x) {
    return picked[std::lower_bound(ranks.begin(), ranks.end(), x) - ranks.begin()];
  };
  auto value_v = [&](int64_t x) { return static_cast<double>(from_key(key_at(x))); };
  auto value_e = [&](int64_t x) {
    return static_cast<double>(rate_of(prog, from_key(key_at(n - 1 - x))));
  };
  for (int64_t k = 0; k < nq; ++k) {
    const double p = qs[k] * static_cast<double>(n - 1);
    const int64_t i = at(qs[k]);
    const double f = p - static_cast<double>(i);
    const bool between = i + 1 < n && p > static_cast<double>(i);
    out_v[k] = between ? interpolate(value_v(i), value_v(i + 1), f) : value_v(i);
    out_e[k] = between ? interpolate(value_e(i), value_e(i + 1), f) : value_e(i);
  }
  return true;
}

}  // namespace

// descend_monitor_quantiles with radix_ranks' selection, the rows left as they are (no
// reordering): the same values (tested against it and numpy). For tests and benchmarks of
// the selection descend_monitor_rows uses. gather_digits' path: as the portable switch says
// at the call's start.
extern "C" int32_t descend_monitor_quantiles_radix(int64_t rows, const int64_t* start,
                                                   const int64_t* count, int64_t total,
                                                   const float* data, int64_t nq,
                                                   const double* qs, double* out) {
  for (int64_t r = 0; r < rows; ++r)
    if (start[r] < 0 || count[r] < 0 || start[r] > total || count[r] > total - start[r]) return 1;
  for (int64_t k = 0; k < nq; ++k)
    if (!(qs[k] >= 0.0 && qs[k] <= 1.0) || (k > 0 && qs[k] < qs[k - 1])) return 1;
  std::vector<uint32_t> keys, picked;
  Scratch scratch;
  std::vector<int64_t> ranks;
  const bool simd = simd_gather_now();
  for (int64_t r = 0; r < rows; ++r)
    quantile_row(data + start[r], count[r], qs, nq, out + nq * r, keys, ranks, picked, scratch,
                 simd);
  return 0;
}

extern "C" int32_t descend_monitor_rows(const MonitorRows* a) {
  const int64_t P = a->rows, n = a->n, K = a->keys, S = a->samples, G = a->groups;
  const int64_t scopes = a->scopes;
  if (P < 0 || n < 0 || K < 0 || S < 0 || G < 0 || scopes < 1 || a->head < 0) return 1;
  if (a->layers != 0 && a->layers != 1) return 1;
  const int64_t head = a->head, c_micro = head, c_scope = head + 6;
  const int64_t c_clip = c_scope + 7 * scopes, c_quant = c_clip + 1, c_layer = c_quant + 6 * scopes;
  const int64_t T = a->columns;
  if (T != c_layer + (a->layers ? 3 * n : 0)) return 1;
  for (int64_t s = 0; s < scopes; ++s) {
    const int64_t* sp = a->span + 2 * s;
    if (sp[0] < 0 || sp[0] > sp[1] || sp[1] > n || !inside(a->part + 2 * s, S)) return 1;
  }
  for (int64_t j = 0; j < n; ++j) {
    if (a->param_group[j] < 0 || a->param_group[j] >= G) return 1;
    if (a->layers && !inside(a->layer_part + 2 * j, S)) return 1;
  }
  int64_t outside = 0;  // (branch-free, vectorised)
  for (int64_t s = 0; s < S; ++s) outside += (a->group_of[s] < -1) | (a->group_of[s] >= G);
  if (outside) return 1;
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t g = 0; g < G; ++g) {  // the programs as descend_monitor_rates reads them
      const double* f = a->programs + kRateFields * (p * G + g);
      int64_t row;
      bool on;
      if (!row_index(f[0], K, &row) || !flag(f[1], &on) || !row_index(f[3], K, &row) ||
          !row_index(f[4], K, &row) || !flag(f[5], &on) || !flag(f[7], &on))
        return 1;
    }
    if (a->mode[p] < 0 || a->mode[p] > 2) return 1;
    for (int64_t j = 0; j < n; ++j)
      if (a->mode[p] == 1 && a->given_eff[p * n + j] != 0 && a->given_eff[p * n + j] != 1)
        return 1;
    for (int64_t c = 0; c <= head; ++c) {
      bool on;
      if (!flag(a->lead[2 * ((head + 1) * p + c) + 1], &on)) return 1;
    }
    const double* info = a->micro_info + 4 * p;
    bool counted = false, several;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t code = a->micro[p * n + j];
      if (code < 0 || code > 2) return 1;
      counted = counted || code > 0;
    }
    // k: a whole number of passes, ≥ 1 exactly where a parameter was counted
    if (!(info[0] >= 0.0 && info[0] < 9.0e15) || info[0] != std::floor(info[0]) ||
        (info[0] >= 1.0) != counted || !flag(info[2], &several))
      return 1;
  }
  // the group every sampled coordinate of a scope is in, or -1 (several, or none)
  std::vector<int64_t> scope_group(scopes, -1);
  for (int64_t s = 0; s < scopes; ++s) {
    const int64_t first = a->part[2 * s], count = a->part[2 * s + 1];
    const int64_t g = count > 0 ? a->group_of[first] : -1;
    int64_t other = 0;  // (branch-free, vectorised)
    for (int64_t i = first; i < first + count; ++i) other += a->group_of[i] != g;
    scope_group[s] = other ? -1 : g;
  }
  // everything into copies; written out only once every step's row is complete
  std::vector<double> values(P * T, 0.0);
  std::vector<uint8_t> present(P * T, 0);
  double noise[2] = {a->noise[0], a->noise[1]};
  std::vector<double> combined(8 * scopes + 2 * n);
  std::vector<float> drawn(2 * S);
  std::vector<uint32_t> keys, picked;
  Scratch scratch;
  std::vector<int64_t> ranks;
  std::vector<uint8_t> has_eff(n);
  std::vector<RateProgram> parsed(G);
  std::vector<Run> runs;
  group_runs(a->group_of, S, runs);
  const double qs[3] = {0.1, 0.5, 0.9}, median = 0.5;
  const bool simd = simd_gather_now();  // gather_digits' path, for the whole call
  for (int64_t p = 0; p < P; ++p) {
    double* v = values.data() + p * T;
    uint8_t* on = present.data() + p * T;
    const double* sums = a->sums + p * n * 9;
    const double* lead = a->lead + 2 * (head + 1) * p;
    for (int64_t c = 0; c < head; ++c) {
      v[c] = lead[2 * c];
      on[c] = lead[2 * c + 1] != 0.0;
    }
    v[head + 5] = lead[2 * head];
    on[head + 5] = lead[2 * head + 1] != 0.0;
    // the gradient before clipping and the noise scale (Monitor._clip_and_noise)
    const double* info = a->micro_info + 4 * p;
    const int64_t* code = a->micro + p * n;
    double pre = NAN;
    const bool counted = info[0] >= 1.0;
    if (counted) {
      const double k = info[0];
      double total_sq = 0.0, single = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        if (code[j] > 0) total_sq += sums[9 * j + 1];
        if (code[j] == 1) single += sums[9 * j + 1];
      }
      double micro_sq = total_sq;
      if (k != 1.0) micro_sq = info[2] != 0.0 ? info[1] + single : single;
      pre = std::sqrt(total_sq) * info[3];
      v[c_micro] = pre;
      v[c_micro + 1] = k;
      on[c_micro] = on[c_micro + 1] = 1;
      if (k >= 2.0) {
        double g2, trace;
        noise_parts(k, micro_sq, total_sq, &g2, &trace);
        v[c_micro + 2] = g2;
        v[c_micro + 3] = trace;
        on[c_micro + 2] = on[c_micro + 3] = 1;
        const double b = a->noise_beta;
        const double n0 = average(b, noise[0], trace), n1 = average(b, noise[1], g2);
        noise[0] = n0;
        noise[1] = n1;
        if (n1 > 0) {
          v[c_micro + 4] = a->unit * n0 / n1;
          on[c_micro + 4] = 1;
        }
      }
    }
    // the combinations of the sums (descend_monitor_combine)
    if (descend_monitor_combine(n, sums, scopes, a->span, a->layers, combined.data())) return 1;
    for (int64_t s = 0; s < scopes; ++s) {
      const double* c = combined.data() + 8 * s;
      for (int64_t t = 0; t < 6; ++t) {
        v[c_scope + 7 * s + t] = c[t];
        on[c_scope + 7 * s + t] = 1;
      }
      if (c[7] != 0.0) {
        v[c_scope + 7 * s + 6] = c[6];
        on[c_scope + 7 * s + 6] = 1;
      }
    }
    if (counted) {
      v[c_clip] = combined[0] < pre * (1 - 1e-4) ? 1.0 : 0.0;
      on[c_clip] = 1;
    }
    if (a->layers)
      for (int64_t j = 0; j < n; ++j) {
        v[c_layer + 3 * j] = combined[8 * scopes + 2 * j];
        v[c_layer + 3 * j + 1] = combined[8 * scopes + 2 * j + 1];
        on[c_layer + 3 * j] = on[c_layer + 3 * j + 1] = 1;
      }
    // v̂ and the rate at the sampled coordinates (descend_monitor_rates), their quantiles:
    // each scope's, each layer's median
    const double* program = a->programs + kRateFields * p * G;
    const int64_t mode = a->mode[p];
    bool any_rate = mode == 1, any_eff = false;
    for (int64_t g = 0; g < G && mode == 0; ++g)
      any_rate = any_rate || program[kRateFields * g] >= 0 || program[kRateFields * g + 3] >= 0;
    if (!any_rate) continue;
    for (int64_t j = 0; j < n; ++j) {
      has_eff[j] = mode == 1 ? a->given_eff[p * n + j] == 1
                             : program[kRateFields * a->param_group[j] + 3] >= 0;
      any_eff = any_eff || has_eff[j];
    }
    const float* rates = drawn.data();
    if (mode == 1)
      rates = a->given + 2 * S * p;
    else {  // descend_monitor_rates, its programs and groups checked above
      for (int64_t g = 0; g < G; ++g)
        if (!parse_program(program + kRateFields * g, K, &parsed[g])) return 1;
      rate_rows(parsed.data(), S, a->gathered + p * K * S, runs, drawn.data());
    }
    for (int64_t s = 0; s < scopes; ++s) {
      bool eff_here = false;
      for (int64_t j = a->span[2 * s]; j < a->span[2 * s + 1]; ++j)
        eff_here = eff_here || has_eff[j];
      double q[2][3];
      const float* row = rates + a->part[2 * s];
      const int64_t g = scope_group[s];
      RateProgram prog;
      const bool paired = mode == 0 && g >= 0 &&
                          parse_program(program + kRateFields * g, K, &prog) && pairable(prog) &&
                          quantile_pair(row, row + S, a->part[2 * s + 1], prog, qs, 3, q[0],
                                        q[1], keys, ranks, picked, scratch, simd);
      for (int64_t r = 0; r < 2; ++r) {
        if (!paired)
          quantile_row(row + r * S, a->part[2 * s + 1], qs, 3, q[r], keys, ranks, picked,
                       scratch, simd);
        const bool shown = (r == 0 || eff_here) &&
                           !(std::isnan(q[r][0]) && std::isnan(q[r][1]) && std::isnan(q[r][2]));
        for (int64_t t = 0; t < 3; ++t) {
          v[c_quant + 6 * s + 3 * r + t] = q[r][t];
          on[c_quant + 6 * s + 3 * r + t] = shown;
        }
      }
    }
    if (!a->layers || !any_eff) continue;
    for (int64_t j = 0; j < n; ++j)
      if (has_eff[j]) {
        quantile_row(rates + S + a->layer_part[2 * j], a->layer_part[2 * j + 1], &median,
                     1, v + c_layer + 3 * j + 2, keys, ranks, picked, scratch, simd);
        on[c_layer + 3 * j + 2] = 1;
      }
  }
  std::copy(present.begin(), present.end(), a->present);
  double* packed = a->packed;
  for (int64_t i = 0; i < P * T; ++i)
    if (present[i]) *packed++ = values[i];
  a->noise[0] = noise[0];
  a->noise[1] = noise[1];
  return 0;
}

// sizeof(MonitorRows), which descend.monitor.fused compares with its ctypes mirror.
extern "C" int64_t descend_monitor_rows_size() { return sizeof(MonitorRows); }

// ---------------------------------------------------------------------------------------------
// descend_monitor_step_read: the sampled step's read with θ before the step and the gradient
// before clipping given per parameter (a tensor and the element it starts at: the monitor's
// flat rows, or the gradient backward produced, held as it is), the nine sums in four float64
// lanes (vector registers) and the gather's owners found without branches.
namespace {

typedef float f4 __attribute__((vector_size(16)));
typedef int32_t i4 __attribute__((vector_size(16)));
typedef double d4 __attribute__((vector_size(32)));

inline f4 load4(const float* x) {
  f4 v;
  std::memcpy(&v, x, sizeof v);
  return v;
}

inline double lanes(d4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }

// Four floats widened to doubles (exact): one vcvtps2pd where AVX has it (GCC's
// __builtin_convertvector made two half conversions and an insert of them).
inline d4 widen(f4 x) {
#if defined(__AVX__)
  return (d4)_mm256_cvtps_pd((__m128)x);
#else
  return __builtin_convertvector(x, d4);
#endif
}

// The nine sums of one parameter, in float64 (with u = θ_before − θ, the float32 difference,
// and the non-finite entries of g counted, then taken as 0 everywhere else):
//   ‖θ_before‖², ‖g_preclip‖², ‖g‖², ‖u‖², ‖m‖², m·g, #(u·g < 0), #(g ≠ 0), #(g non-finite)
// accumulated in four lanes (lane l holds the entries i ≡ l mod 4 of the first 4⌊n/4⌋,
// summed in order), then the tail in order, combined as ((l0 + l1) + (l2 + l3)) + tail: a
// fixed order (deterministic). The counts are exact (int32 lanes, emptied into int64 every 2^28 groups).
template <bool kMomentum>
void lane_sums(int64_t n, const float* __restrict__ th, const float* __restrict__ g,
               const float* __restrict__ m, const float* __restrict__ b,
               const float* __restrict__ p, double* __restrict__ o) {
  d4 w2 = {0, 0, 0, 0}, gp2 = w2, g2 = w2, u2 = w2, m2 = w2, mg = w2;
  int64_t opposed = 0, nonzero = 0, nonfinite = 0;
  const int64_t body = n - n % 4;
  constexpr int64_t kBlock = int64_t{1} << 30;  // 2^28 groups of four: no int32 lane overflows
  for (int64_t start = 0; start < body; start += kBlock) {
    const int64_t stop = std::min(body, start + kBlock);
    i4 opp = {0, 0, 0, 0}, nz = opp, bad = opp;
    for (int64_t i = start; i < stop; i += 4) {
      const f4 raw = load4(g + i);
      const i4 finite = (raw - raw) == 0.0f;  // -1 where finite, 0 for ±inf and NaN
      const f4 gi = (f4)((i4)raw & finite);  // the non-finite entries as 0 (bit casts)
      const f4 bf = load4(b + i);
      const f4 uf = bf - load4(th + i);  // as torch: the float32 difference
      const d4 bd = widen(bf);
      const d4 pd = widen(load4(p + i));
      const d4 gd = widen(gi);
      const d4 ud = widen(uf);
      w2 += bd * bd;
      gp2 += pd * pd;
      g2 += gd * gd;
      u2 += ud * ud;
      opp -= (uf * gi < 0.0f);
      nz -= (gi != 0.0f);
      bad += finite + 1;
      if (kMomentum) {
        const d4 md = widen(load4(m + i));
        m2 += md * md;
        mg += md * gd;
      }
    }
    for (int l = 0; l < 4; ++l) {
      opposed += opp[l];
      nonzero += nz[l];
      nonfinite += bad[l];
    }
  }
  double tw2 = 0, tgp2 = 0, tg2 = 0, tu2 = 0, tm2 = 0, tmg = 0;
  for (int64_t i = body; i < n; ++i) {
    const float raw = g[i];
    const bool finite = raw - raw == 0.0f;
    const float gi = finite ? raw : 0.0f;
    const float uf = b[i] - th[i];
    const double bi = b[i], pi = p[i], gd = gi, u = uf;
    tw2 += bi * bi;
    tgp2 += pi * pi;
    tg2 += gd * gd;
    tu2 += u * u;
    opposed += uf * gi < 0.0f;
    nonzero += gi != 0.0f;
    nonfinite += !finite;
    if (kMomentum) {
      const double mi = m[i];
      tm2 += mi * mi;
      tmg += mi * gd;
    }
  }
  o[0] = lanes(w2) + tw2;
  o[1] = lanes(gp2) + tgp2;
  o[2] = lanes(g2) + tg2;
  o[3] = lanes(u2) + tu2;
  o[4] = lanes(m2) + tm2;
  o[5] = lanes(mg) + tmg;
  o[6] = static_cast<double>(opposed);
  o[7] = static_cast<double>(nonzero);
  o[8] = static_cast<double>(nonfinite);
}

}  // namespace

namespace {
// o[s] = x[index[s] − first] for s < count (every coordinate inside x, checked by the caller),
// or NaN where there is no x; scalar (GCC's gathers were slower here).
__attribute__((noinline, optimize("no-tree-vectorize"))) void gather_run(
    const float* x, const int64_t* __restrict__ index, int64_t count, int64_t first,
    float* __restrict__ o) {
  if (x == nullptr) {
    for (int64_t s = 0; s < count; ++s) o[s] = NAN;
    return;
  }
  for (int64_t s = 0; s < count; ++s) o[s] = x[index[s] - first];
}
}  // namespace

struct CheckArgs;  // check.cpp's
extern "C" int32_t descend_check(CheckArgs* a);

// The arguments of descend_monitor_step_read. Each role names its tensor by its index among
// the checked ones; θ before the step and the gradient before clipping per parameter j: tensor before[j] from its element before_at[j] on
// (numel[j] elements), and likewise preclip[j], preclip_at[j]; and the check of the live
// tensors to run first, whose out_ptr and out_numel are ptrs and sizes.
struct MonitorStepRead {
  int64_t n;                  // parameters
  const int64_t* numel;       // their sizes
  int64_t count;              // tensors checked
  const int64_t* ptrs;        // their addresses (descend_check's out_ptr)
  const int64_t* sizes;       // their sizes as checked (out_numel)
  const int64_t* theta;       // per parameter: the index of θ among the checked tensors
  const int64_t* grad;        // of its gradient
  const int64_t* momentum;    // of its momentum buffer, or -1 (none)
  const int64_t* before;      // of the tensor holding θ before the step
  const int64_t* before_at;   // the element of that tensor where the parameter's starts
  const int64_t* preclip;     // of the tensor holding the gradient before clipping
  const int64_t* preclip_at;  // its first element
  int64_t keys;               // state sources gathered
  const int64_t* sources;     // keys × n: the index of each parameter's source, or -1 (NaN)
  int64_t samples;            // sampled coordinates
  const int64_t* index;       // their coordinates (all parameters end to end)
  double* sums;               // out: n × 9
  float* gathered;            // out: keys × samples
  CheckArgs* check;           // descend_check's arguments for the count tensors
  int64_t steps;              // one-element tensors read out (the optimizer's step counts)
  const int64_t* step;        // the index of each among the checked tensors
  float* step_values;         // out: their values
};

// Per parameter the nine sums of lane_sums, and gathered[k × samples + s] = the entry at
// coordinate index[s] (of all parameters laid end to end) of source k of the parameter
// holding it (NaN where it has none), over the tensors descend_check reads first, in this call
// (their addresses and sizes: ptrs and sizes). Every index, size, start and coordinate is
// checked before anything is read or written: 1, and nothing written to sums or gathered, on
// a failed check or any mismatch.
extern "C" int32_t descend_monitor_step_read(const MonitorStepRead* a) {
  const int64_t n = a->n;
  if (n < 0 || a->keys < 0 || a->samples < 0 || a->count < 0) return 1;
  if (a->check == nullptr || descend_check(a->check) != 0) return 1;
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
  // the address of element `first` of tensor i if elements [first, first + len) lie in it
  auto slice = [a](int64_t i, int64_t first, int64_t len, const float** out) {
    if (i < 0 || i >= a->count || first < 0 || first > a->sizes[i] ||
        len > a->sizes[i] - first)
      return false;
    *out = reinterpret_cast<const float*>(a->ptrs[i]) + first;
    return len == 0 || a->ptrs[i] != 0;
  };
  std::vector<int64_t> sources(a->keys * n);
  std::vector<const float*> roles(5 * n);  // θ, g, m, θ before, g before clipping
  for (int64_t j = 0; j < n; ++j) {
    const int64_t len = a->numel[j];
    int64_t theta = 0, grad = 0, momentum = 0;
    if (!resolve(a->theta[j], len, false, &theta) || !resolve(a->grad[j], len, false, &grad) ||
        !resolve(a->momentum[j], len, true, &momentum) ||
        !slice(a->before[j], a->before_at[j], len, &roles[5 * j + 3]) ||
        !slice(a->preclip[j], a->preclip_at[j], len, &roles[5 * j + 4]))
      return 1;
    roles[5 * j] = reinterpret_cast<const float*>(theta);
    roles[5 * j + 1] = reinterpret_cast<const float*>(grad);
    roles[5 * j + 2] = reinterpret_cast<const float*>(momentum);
    for (int64_t k = 0; k < a->keys; ++k)
      if (!resolve(a->sources[k * n + j], len, true, &sources[k * n + j])) return 1;
  }
  if (a->steps < 0) return 1;
  std::vector<int64_t> step(a->steps);
  for (int64_t i = 0; i < a->steps; ++i)
    if (!resolve(a->step[i], 1, false, &step[i])) return 1;
  // a coordinate outside [0, Σ numel) refuses the call (before anything is written)
  const int64_t total = offset[n];
  int64_t low = 0, high = 0;
  for (int64_t s = 0; s < a->samples; ++s) {
    low = std::min(low, a->index[s]);
    high = std::max(high, a->index[s]);
  }
  if (low < 0 || (a->samples > 0 && high >= total)) return 1;
#pragma omp parallel for schedule(dynamic) if (total > (int64_t{1} << 18))
  for (int64_t j = 0; j < n; ++j) {
    const float* const* r = roles.data() + 5 * j;
    if (r[2] != nullptr)
      lane_sums<true>(a->numel[j], r[0], r[1], r[2], r[3], r[4], a->sums + 9 * j);
    else
      lane_sums<false>(a->numel[j], r[0], r[1], nullptr, r[3], r[4], a->sums + 9 * j);
  }
  // each sample's parameter j (offset[j] <= c < offset[j + 1]: one non-empty parameter) and
  // its element there, then that element of every source. The previous sample's j is tried
  // first (the coordinates are sorted within each part of the sample, so it almost always
  // holds), else the last j with offset[j] <= c is found by a branchless binary search.
  const int64_t keys = a->keys, samples = a->samples;
  const int64_t* const index = a->index;
  const int64_t* const off = offset.data();
  float* const gathered = a->gathered;
  for (int64_t k = 0; k < keys; ++k) {
    const int64_t* const src = sources.data() + k * n;
    float* const o = gathered + k * samples;
    int64_t j = 0;  // samples > 0 means total > 0, so n >= 1 and off[1] exists
    for (int64_t s = 0; s < samples;) {
      const int64_t c = index[s];
      if (c < off[j] || c >= off[j + 1]) {
        const int64_t* base = off;
        for (int64_t len = n; len > 1;) {
          const int64_t half = len / 2;
          base = base[half] <= c ? base + half : base;
          len -= half;
        }
        j = base - off;
      }
      // the run of samples from s on inside parameter j, read in a loop of its own
      const uint64_t lo = static_cast<uint64_t>(off[j]), size = off[j + 1] - off[j];
      int64_t e = s + 1;
      while (e < samples && static_cast<uint64_t>(index[e]) - lo < size) ++e;
      gather_run(reinterpret_cast<const float*>(src[j]), index + s, e - s, off[j], o + s);
      s = e;
    }
  }
  for (int64_t i = 0; i < a->steps; ++i) a->step_values[i] = *reinterpret_cast<const float*>(step[i]);
  return 0;
}

// sizeof(MonitorStepRead), which descend.monitor.fused compares with its ctypes mirror.
extern "C" int64_t descend_monitor_step_read_args_size() { return sizeof(MonitorStepRead); }

// θ before a sampled step: parameter j (numel[j] elements) copied into the flat row at
// offset Σ numel[<j]. The tensors — the n parameters, then the row — are checked first by
// descend_check (check: its arguments; ptrs and sizes its out_ptr and out_numel).
struct MonitorSnapshot {
  int64_t n;             // parameters
  const int64_t* numel;  // their sizes
  const int64_t* ptrs;   // n + 1 addresses, written by the check
  const int64_t* sizes;  // n + 1 sizes, written by the check
  CheckArgs* check;      // descend_check's arguments for the n + 1 tensors
};

// 0 when the parameters were copied; 1, and nothing written, on a failed check or a size
// that is not numel[j] (the row: Σ numel).
extern "C" int32_t descend_monitor_snapshot(const MonitorSnapshot* a) {
  const int64_t n = a->n;
  if (n < 0 || a->check == nullptr || descend_check(a->check) != 0) return 1;
  std::vector<int64_t> offset;
  if (!offsets(n, a->numel, offset)) return 1;
  for (int64_t j = 0; j < n; ++j)
    if (a->sizes[j] != a->numel[j] || (a->numel[j] > 0 && a->ptrs[j] == 0)) return 1;
  if (a->sizes[n] != offset[n] || (offset[n] > 0 && a->ptrs[n] == 0)) return 1;
  float* row = reinterpret_cast<float*>(a->ptrs[n]);
  for (int64_t j = 0; j < n; ++j)
    if (a->numel[j] > 0)
      std::memcpy(row + offset[j], reinterpret_cast<const float*>(a->ptrs[j]),
                  sizeof(float) * static_cast<size_t>(a->numel[j]));
  return 0;
}

extern "C" int64_t descend_monitor_snapshot_args_size() { return sizeof(MonitorSnapshot); }
