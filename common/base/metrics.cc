#include "common/base/metrics.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/base/prefaulted_heap.h"
#include "common/base/strings.h"

namespace push {

void LatencyHistogram::Observe(int64_t nanos) {
  double seconds = static_cast<double>(nanos) * 1e-9;
  int i = 0;
  while (i < kBuckets && seconds > kBounds[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(std::max<int64_t>(nanos, 0)),
                       std::memory_order_relaxed);
}

void LatencyHistogram::Render(std::string* out, const char* name, const char* help) const {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " histogram\n");
  uint64_t cumulative = 0;
  for (int i = 0; i <= kBuckets; ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    std::string le = i < kBuckets ? absl::StrCat(kBounds[i]) : "+Inf";
    absl::StrAppend(out, name, "_bucket{le=\"", le, "\"} ", cumulative, "\n");
  }
  absl::StrAppend(out, name, "_sum ",
                  static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) * 1e-9, "\n",
                  name, "_count ", cumulative, "\n");
}

int64_t Metrics::NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Metrics& GlobalMetrics() {
  static Metrics* metrics = new Metrics();
  return *metrics;
}

std::string Metrics::RenderPrometheus() const {
  std::string out;
  auto one = [&out](const char* name, const char* type, const char* help, auto value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ",
                    value, "\n");
  };
  absl::StrAppend(&out,
                  "# HELP pushd_build_info Version of the running pushd.\n"
                  "# TYPE pushd_build_info gauge\n"
                  "pushd_build_info{version=\"",
                  version, "\",role=\"", role, "\"} 1\n");
  absl::StrAppend(&out,
                  "# HELP pushd_connections Open WebSocket connections.\n"
                  "# TYPE pushd_connections gauge\n"
                  "pushd_connections{role=\"",
                  role, "\"} ", connections.load(), "\n");
  one("pushd_connects_total", "counter", "WebSocket connections accepted.", connects.load());
  absl::StrAppend(&out,
                  "# HELP pushd_pushes_total Push calls by result.\n"
                  "# TYPE pushd_pushes_total counter\n",
                  "pushd_pushes_total{result=\"ok\"} ", pushes_ok.load(), "\n",
                  "pushd_pushes_total{result=\"duplicate\"} ", pushes_duplicate.load(), "\n",
                  "pushd_pushes_total{result=\"rejected\"} ", pushes_rejected.load(), "\n");
  one("pushd_deliveries_total", "counter", "Message frames written to WebSockets.",
      deliveries.load());
  one("pushd_replays_total", "counter", "Message frames sent from stored history.", replays.load());
  one("pushd_gaps_total", "counter", "Gap frames sent.", gaps.load());
  one("pushd_store_evictions_total", "counter", "Messages evicted before their ttl.",
      store_evictions.load());
  one("pushd_store_expirations_total", "counter", "Messages expired by ttl.",
      store_expirations.load());
  one("pushd_store_bytes", "gauge", "Bytes held by the in-memory store.", store_bytes.load());
  one("pushd_send_queue_bytes", "gauge", "Bytes waiting in connection send queues.",
      send_queue_bytes.load());
  absl::StrAppend(&out,
                  "# HELP pushd_disconnects_total WebSocket disconnects by reason.\n"
                  "# TYPE pushd_disconnects_total counter\n");
  for (std::string_view label :
       {"client", "deleted", "shutdown", "slow_consumer", "pong_timeout", "protocol", "error"}) {
    uint64_t value = 0;
    for (int i = 0; i < kDisconnectCount; ++i) {
      if (DisconnectLabel(static_cast<Disconnect>(i)) == label) value += disconnects[i].load();
    }
    absl::StrAppend(&out, "pushd_disconnects_total{reason=\"", ToAbsl(label), "\"} ", value, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP pushd_limit_hits_total Connections and requests refused or cut by a "
                  "configured limit.\n"
                  "# TYPE pushd_limit_hits_total counter\n");
  for (int i = 0; i < kLimitCount; ++i) {
    absl::StrAppend(&out, "pushd_limit_hits_total{limit=\"", LimitLabel(static_cast<Limit>(i)),
                    "\"} ", limit_hits[i].load(), "\n");
  }
  one("pushd_tls_handshake_failures_total", "counter",
      "TLS handshakes on the edge port that failed or timed out.", tls_handshake_failures.load());
  one("pushd_grpc_default_deadline_exceeded_total", "counter",
      "gRPC calls without a deadline that ran past --grpc_default_deadline.",
      grpc_default_deadline_exceeded.load());
  one("pushd_presence_events_total", "counter",
      "Presence events this process added to the log (CONNECTED, DISCONNECTED, ONLINE, OFFLINE).",
      presence_events.load());
  one("pushd_presence_watchers", "gauge", "WatchPresence streams open on this process.",
      presence_watchers.load());
  one("pushd_presence_watcher_drops_total", "counter",
      "WatchPresence streams ended for falling more than --presence_max_lag events behind.",
      presence_watcher_drops.load());
  one("pushd_presence_reports_dropped_total", "counter",
      "Connection reports that presence could not write to Redis and gave up on.",
      presence_reports_dropped.load());
  if (PrefaultedHeapStats heap = GetPrefaultedHeapStats(); heap.active) {
    absl::StrAppend(&out,
                    "# HELP pushd_heap_chunks_total 2 MiB chunks of heap memory taken by the "
                    "threads that carry pushes, by who faulted them in: an idle-priority thread "
                    "ahead of use (prefaulted), or the taking thread as it writes (inline: the "
                    "pool was empty).\n"
                    "# TYPE pushd_heap_chunks_total counter\n"
                    "pushd_heap_chunks_total{source=\"prefaulted\"} ",
                    heap.chunks_prefaulted, "\n", "pushd_heap_chunks_total{source=\"inline\"} ",
                    heap.chunks_inline, "\n");
    one("pushd_heap_prefaulted_chunks", "gauge", "2 MiB chunks faulted in and waiting to be taken.",
        heap.ready_chunks);
  }
  push_duration.Render(&out, "pushd_push_duration_seconds",
                       "Push handling time: validate, store, hand to connections.");
  delivery_latency.Render(&out, "pushd_delivery_latency_seconds",
                          "From a Push being stored to its frame written to a socket (live).");
  if (redis_up.load() >= 0) {
    one("pushd_redis_up", "gauge", "1 when the Redis command and subscriber links are up.",
        redis_up.load());
    one("pushd_redis_errors_total", "counter",
        "Redis connection failures: refused connects, lost links, timed-out commands.",
        redis_errors.load());
    redis_roundtrip.Render(&out, "pushd_redis_roundtrip_seconds",
                           "Redis pipeline round trips: first command written to last reply.");
  }
  return out;
}

}  // namespace push
