#pragma once

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"
#include "common/base/clock.h"

namespace push {

// Decides when a repeated event earns a log line: the first at once, then at most one per
// interval, each summarising the events since the previous line, so that a flood of events
// (a refused client retrying in a loop) costs a few lines, not one per event. Thread-safe and
// lock-free: a hit is an atomic increment plus a clock read.
class LogThrottle {
 public:
  explicit LogThrottle(absl::Duration interval, const Clock* clock = Clock::Real());

  // Counts one event. Returns how many events the caller should report now (this one and those
  // held back since the last line), or 0 when a line was reported less than an interval ago.
  uint64_t Hit();

  // Returns the events held back when a line is due (an interval has passed since the last
  // one), or 0. Called periodically so that the tail of a burst is reported too.
  uint64_t Due();

  absl::Duration interval() const { return interval_; }

 private:
  // Takes the right to report at `now` if the last line is an interval old; returns the events
  // to report (0 if another thread took it or nothing is held back and `require_events`).
  uint64_t TryReport(int64_t now_ns, bool require_events);

  const absl::Duration interval_;
  const Clock* const clock_;
  std::atomic<uint64_t> pending_{0};
  // When the next line may be written, in nanoseconds of the clock's Unix time.
  std::atomic<int64_t> next_report_ns_;
};

}  // namespace push
