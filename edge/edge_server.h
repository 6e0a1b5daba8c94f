#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/auth/api_key.h"
#include "common/auth/jwt.h"
#include "common/delivery/directory.h"
#include "common/delivery/hub.h"
#include "common/delivery/store.h"

namespace push::edge {

struct EdgeOptions {
  std::string listen = "0.0.0.0:8080";
  int threads = 1;
  absl::Duration ping_interval = absl::Seconds(20);
  absl::Duration pong_timeout = absl::Seconds(10);
  uint64_t send_queue_bytes = 1 << 20;
  // Bytes waiting in all send queues together; past it the largest backlogs are closed with
  // 4008 (QueueBudget). 0 = no bound.
  uint64_t max_queued_bytes = 0;
  std::vector<std::string> allowed_origins;  // empty = any Origin
  // --auth=jwt: the user is the `sub` of a token verified by this (from `token=` or
  // `Authorization: Bearer`); null = the user comes from the query (--auth=none).
  std::shared_ptr<const JwtVerifier> jwt;
  // When set, DELETE /deleteClient needs `Authorization: Bearer <key>`.
  const ApiKey* api_key = nullptr;
  // DELETE /deleteClient closes connections through it (required).
  Directory* directory = nullptr;
  // Limits (README, "Limits"). 0 = no limit for the two connection counts.
  uint32_t max_connections_per_user = 0;  // more WebSockets of one user get 429
  uint32_t max_connections = 0;           // more WebSockets get 503; see also HandshakeRoom
  uint32_t max_request_header_bytes = 8192;
  absl::Duration handshake_timeout = absl::Seconds(10);
  // When set (PEM text), the edge speaks only TLS: https:// and wss://.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // Readiness as /readyz reports it; owned by the process.
  const std::atomic<bool>* ready = nullptr;
  // Set only in development (--auth=none, no API key): the demo page's POST /demo/push sends a
  // Push through it. `done` gets an HTTP status and a JSON body.
  std::function<void(std::string user_id, std::string data,
                     std::function<void(int status, std::string body)> done)>
      demo_push;
};

// The HTTP/WebSocket edge: /ws, /getPushNews, /healthz, /readyz, /metrics,
// DELETE /deleteClient/{id} and the demo page. Beast and Asio stay inside edge/*.cc.
class EdgeServer {
 public:
  EdgeServer(EdgeOptions options, store::Store* store, Hub* hub);
  ~EdgeServer();

  // Binds the listener and starts the I/O threads.
  absl::Status Start();
  // The bound port (useful with port 0).
  int port() const;
  // Stops accepting new connections; open ones continue.
  void StopAccepting();
  // Closes every WebSocket with `code`, spread evenly over `spread`, and waits until all are gone
  // or `deadline` passes. Returns the number still open at the deadline.
  int64_t CloseAll(uint16_t code, const std::string& reason, absl::Time deadline,
                   absl::Duration spread = absl::ZeroDuration());
  // Stops the I/O threads and joins them.
  void Stop();

  struct Impl;  // public so that edge_server.cc's session classes can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace push::edge
