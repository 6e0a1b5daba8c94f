#include "common/base/limits.h"

#include <array>
#include <type_traits>
#include <utility>

#include "absl/time/time.h"
#include "common/base/log_throttle.h"
#include "common/base/metrics.h"
#include "spdlog/spdlog.h"

namespace push {
namespace {

constexpr absl::Duration kLogInterval = absl::Seconds(10);

struct LimitInfo {
  const char* label;
  const char* what;  // completes "N <what>"
};

constexpr LimitInfo kLimits[kLimitCount] = {
    {"per_user", "upgrade(s) refused with 429: the user is at --max_connections_per_user"},
    {"connections", "upgrade(s) refused with 503: the process is at --max_connections"},
    {"sockets",
     "TCP connection(s) closed at accept: open and handshaking sockets are at their bound "
     "(--max_connections plus room for handshakes)"},
    {"open_files", "accept(s) failed for lack of file descriptors; accepting backs off"},
    {"request_header_bytes",
     "request(s) refused with 431: headers over --max_request_header_bytes"},
    {"handshake_timeout",
     "connection(s) closed without a complete request within --handshake_timeout"},
    {"frame_bytes", "WebSocket(s) closed with 1009: a client frame over 4096 bytes"},
    {"queued_bytes",
     "WebSocket(s) with the largest backlogs closed with 4008: the process's send queues were "
     "over --max_queued_bytes"},
};

// One throttle per limit, as many as kLimitCount (LogThrottle is neither copied nor moved: each
// element is made in place).
template <size_t... I>
std::array<LogThrottle, sizeof...(I)> MakeThrottles(std::index_sequence<I...>) {
  return {(static_cast<void>(I), LogThrottle(kLogInterval))...};
}

LogThrottle* Throttles() {
  // Trivially destructible, so I/O threads may still record hits while the process exits.
  static std::array<LogThrottle, kLimitCount> throttles =
      MakeThrottles(std::make_index_sequence<kLimitCount>());
  static_assert(std::is_trivially_destructible_v<decltype(throttles)>);
  return throttles.data();
}

void Log(int i, uint64_t hits, bool first) {
  if (first) {
    spdlog::warn("limit {}: {} {} (further hits are summarised at most every {})", kLimits[i].label,
                 hits, kLimits[i].what, absl::FormatDuration(kLogInterval));
  } else {
    spdlog::warn("limit {}: {} {} since the last report", kLimits[i].label, hits, kLimits[i].what);
  }
}

}  // namespace

const char* LimitLabel(Limit limit) { return kLimits[static_cast<int>(limit)].label; }

void RecordLimitHit(Limit limit) {
  int i = static_cast<int>(limit);
  GlobalMetrics().limit_hits[i].fetch_add(1, std::memory_order_relaxed);
  if (uint64_t hits = Throttles()[i].Hit(); hits > 0) Log(i, hits, hits == 1);
}

void FlushLimitLogs() {
  for (int i = 0; i < kLimitCount; ++i) {
    if (uint64_t hits = Throttles()[i].Due(); hits > 0) Log(i, hits, false);
  }
}

}  // namespace push
