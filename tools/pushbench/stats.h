#pragma once

#include <sys/types.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstdint>

namespace pushbench {

using Clock = std::chrono::steady_clock;

// Nanoseconds since the steady clock's epoch: what payloads carry as their send stamp. Sender and
// receiver are the same process, so the clocks agree.
inline int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

inline double SecondsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// A log-linear histogram of non-negative values (HdrHistogram's layout): exact below 128, then 64
// buckets per power of two, so any reported percentile is within 1/64 (1.6%) of the true value.
// Not thread-safe: one per thread, merged at the end.
class Histogram {
 public:
  void Record(uint64_t value) {
    ++counts_[Index(value)];
    ++total_;
    max_ = std::max(max_, value);
    min_ = std::min(min_, value);
  }
  void Merge(const Histogram& other) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
    min_ = std::min(min_, other.min_);
  }
  uint64_t count() const { return total_; }
  uint64_t max() const { return total_ ? max_ : 0; }
  uint64_t min() const { return total_ ? min_ : 0; }

  // The value at percentile `p` (0-100]: the highest value of the bucket holding that rank,
  // capped at the exact maximum.
  uint64_t Percentile(double p) const {
    if (total_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(p / 100.0 * static_cast<double>(total_) + 0.5);
    rank = std::clamp<uint64_t>(rank, 1, total_);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(UpperBound(i), max_);
    }
    return max_;
  }

 private:
  static constexpr int kSubBits = 6;  // 64 buckets per power of two
  static constexpr uint64_t kLinear = 2u << kSubBits;
  static constexpr size_t kBuckets = kLinear + (64 - kSubBits) * (1u << kSubBits);

  static size_t Index(uint64_t v) {
    if (v < kLinear) return static_cast<size_t>(v);
    int msb = 63 - std::countl_zero(v);
    int shift = msb - kSubBits;
    uint64_t mantissa = (v >> shift) - (1u << kSubBits);
    return static_cast<size_t>(kLinear + (shift - 1) * (1u << kSubBits) + mantissa);
  }
  static uint64_t UpperBound(size_t index) {
    if (index < kLinear) return index;
    size_t rel = index - kLinear;
    int shift = static_cast<int>(rel >> kSubBits) + 1;
    uint64_t mantissa = (rel & ((1u << kSubBits) - 1)) + (1u << kSubBits);
    return ((mantissa + 1) << shift) - 1;
  }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
};

// What /proc says about a process: resident memory and CPU time used so far.
struct ProcStats {
  bool ok = false;
  int64_t rss_kib = 0;
  int64_t peak_rss_kib = 0;  // VmHWM: the highest RSS so far
  double cpu_seconds = 0;    // utime + stime
};

ProcStats ReadProcStats(pid_t pid);
// This process's own CPU time (user + system), from getrusage.
double SelfCpuSeconds();

}  // namespace pushbench
