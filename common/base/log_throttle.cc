#include "common/base/log_throttle.h"

#include <limits>

namespace push {

LogThrottle::LogThrottle(absl::Duration interval, const Clock* clock)
    : interval_(interval), clock_(clock), next_report_ns_(std::numeric_limits<int64_t>::min()) {}

uint64_t LogThrottle::Hit() {
  pending_.fetch_add(1, std::memory_order_relaxed);
  return TryReport(absl::ToUnixNanos(clock_->Now()), /*require_events=*/false);
}

uint64_t LogThrottle::Due() {
  if (pending_.load(std::memory_order_relaxed) == 0) return 0;
  return TryReport(absl::ToUnixNanos(clock_->Now()), /*require_events=*/true);
}

uint64_t LogThrottle::TryReport(int64_t now_ns, bool require_events) {
  int64_t next = next_report_ns_.load(std::memory_order_relaxed);
  if (now_ns < next) return 0;
  // One thread wins the report for this interval; the others' events stay pending for the next.
  if (!next_report_ns_.compare_exchange_strong(next, now_ns + absl::ToInt64Nanoseconds(interval_),
                                               std::memory_order_relaxed)) {
    return 0;
  }
  uint64_t events = pending_.exchange(0, std::memory_order_relaxed);
  if (events == 0 && require_events) {
    // Nothing to say: give the slot back so that the next event is reported at once.
    next_report_ns_.store(next, std::memory_order_relaxed);
  }
  return events;
}

}  // namespace push
