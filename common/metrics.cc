#include "common/metrics.h"

#include "absl/strings/str_cat.h"

namespace push {

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
  one("pushd_connections", "gauge", "Open WebSocket connections.", connections.load());
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
  for (auto [reason, value] : {std::pair<const char*, uint64_t>{"client", closed_client.load()},
                               {"deleted", closed_deleted.load()},
                               {"shutdown", closed_shutdown.load()},
                               {"slow_consumer", closed_slow_consumer.load()},
                               {"pong_timeout", closed_pong_timeout.load()},
                               {"protocol", closed_protocol.load()},
                               {"error", closed_error.load()}}) {
    absl::StrAppend(&out, "pushd_disconnects_total{reason=\"", reason, "\"} ", value, "\n");
  }
  return out;
}

}  // namespace push
