#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace push {

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
  // Disconnects by reason.
  std::atomic<uint64_t> closed_client{0};
  std::atomic<uint64_t> closed_deleted{0};
  std::atomic<uint64_t> closed_shutdown{0};
  std::atomic<uint64_t> closed_slow_consumer{0};
  std::atomic<uint64_t> closed_pong_timeout{0};
  std::atomic<uint64_t> closed_protocol{0};
  std::atomic<uint64_t> closed_error{0};

  std::string RenderPrometheus() const;
};

Metrics& GlobalMetrics();

}  // namespace push
