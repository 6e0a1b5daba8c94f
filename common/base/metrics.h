#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "common/base/close.h"
#include "common/base/limits.h"

namespace push {

// A Prometheus histogram of durations with fixed buckets; lock-free, cheap enough per message.
class LatencyHistogram {
 public:
  static constexpr int kBuckets = 16;
  // Upper bounds in seconds.
  static constexpr double kBounds[kBuckets] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                               0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                               1,      2.5,     5,      10};
  void Observe(int64_t nanos);
  void Render(std::string* out, const char* name, const char* help) const;

 private:
  std::atomic<uint64_t> counts_[kBuckets + 1] = {};  // the last one is +Inf
  std::atomic<uint64_t> sum_nanos_{0};
};

// Process-wide counters; the /metrics endpoint renders them in Prometheus text format.
struct Metrics {
  std::atomic<int64_t> connections{0};
  std::atomic<uint64_t> connects{0};
  std::atomic<uint64_t> pushes_ok{0};
  std::atomic<uint64_t> pushes_duplicate{0};
  std::atomic<uint64_t> pushes_rejected{0};
  std::atomic<uint64_t> deliveries{0};  // message frames written to sockets
  std::atomic<uint64_t> replays{0};     // message frames sent from the stream (not live)
  std::atomic<uint64_t> gaps{0};
  std::atomic<uint64_t> store_evictions{0};  // messages removed before their ttl
  std::atomic<uint64_t> store_expirations{0};
  std::atomic<int64_t> store_bytes{0};
  std::atomic<int64_t> send_queue_bytes{0};
  // Disconnects, indexed by push::Disconnect (common/base/close.h).
  std::atomic<uint64_t> disconnects[kDisconnectCount] = {};
  void CountDisconnect(Disconnect why) {
    disconnects[static_cast<int>(why)].fetch_add(1, std::memory_order_relaxed);
  }
  // Hits of each configured limit, indexed by push::Limit (common/base/limits.h).
  std::atomic<uint64_t> limit_hits[kLimitCount] = {};
  // TLS handshakes on the edge that failed or timed out (plain text on the TLS port included).
  std::atomic<uint64_t> tls_handshake_failures{0};
  // Unary gRPC calls without a deadline of their own that hit --grpc_default_deadline.
  std::atomic<uint64_t> grpc_default_deadline_exceeded{0};
  // Presence (CONTRACT §6): events this process added to the log, WatchPresence streams open,
  // streams ended for falling too far behind (--presence_max_lag), presence reports dropped
  // (Redis unreachable too long).
  std::atomic<uint64_t> presence_events{0};
  std::atomic<int64_t> presence_watchers{0};
  std::atomic<uint64_t> presence_watcher_drops{0};
  std::atomic<uint64_t> presence_reports_dropped{0};
  // Push handling (validate, append, hand to connections) and push -> socket write of live
  // messages (replays are excluded: their age is how long the user was away).
  LatencyHistogram push_duration;
  LatencyHistogram delivery_latency;
  // Redis (--redis): pipelined round trips, connection failures, whether the links are up.
  LatencyHistogram redis_roundtrip;
  std::atomic<uint64_t> redis_errors{0};
  std::atomic<int64_t> redis_up{-1};  // -1: no Redis configured
  // Labels set once at start.
  std::string role = "all";
  std::string version;

  std::string RenderPrometheus() const;

  // Nanoseconds on the monotonic clock, for latency measurements.
  static int64_t NowNanos();
};

Metrics& GlobalMetrics();

}  // namespace push
