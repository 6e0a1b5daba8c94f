#pragma once

// Internal to edge/: the EdgeServer's shared state, seen by the listener (edge_server.cc) and by
// the session classes (http_session.h). Includes Asio; nothing outside edge/ includes it.

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/limits.h"
#include "common/base/log_throttle.h"
#include "common/config/config.h"
#include "edge/edge_server.h"
#include "edge/timer_wheel.h"
#include "edge/websocket_session.h"

namespace push::edge {

using tcp = net::ip::tcp;

inline constexpr absl::Duration kAcceptErrorLogInterval = absl::Seconds(10);

// The server's TLS configuration (an SSL context); defined in tls_session.cc, the only file that
// includes Asio's SSL headers.
class TlsContext;

struct EdgeServer::Impl {
  EdgeOptions options;
  store::Store* store;
  Hub* hub;
  // Set when the edge speaks TLS (https://, wss://). Before the io_context, which it outlives:
  // streams in pending handlers still refer to it.
  std::shared_ptr<TlsContext> tls;
  // Before the io_context: sessions it destroys still count down.
  SessionCounters counters;
  QueueBudget budget;
  // Accepted sockets beyond this are closed at once (max_connections plus HandshakeRoom).
  int64_t max_sockets;
  LogThrottle accept_error_log{kAcceptErrorLogInterval};
  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> work{ioc.get_executor()};
  // Heartbeats and token deadlines of every session (after the io_context: its timer goes first).
  TimerWheel wheel{ioc};
  std::optional<tcp::acceptor> acceptor;
  // The acceptor and its retry timer live on one strand: accept handlers and StopAccepting may
  // run on different I/O threads.
  net::strand<net::io_context::executor_type> accept_strand{net::make_strand(ioc)};
  net::steady_timer accept_retry{accept_strand};
  std::vector<std::thread> threads;
  std::atomic<bool> accepting{true};
  int port = 0;

  Impl(EdgeOptions o, store::Store* s, Hub* h)
      : options(std::move(o)),
        store(s),
        hub(h),
        budget(h, options.max_queued_bytes),
        max_sockets(options.max_connections == 0 ? std::numeric_limits<int64_t>::max()
                                                 : int64_t{options.max_connections} +
                                                       HandshakeRoom(options.max_connections)),
        ioc(std::max(1, options.threads)) {
    counters.budget = &budget;
  }

  bool Ready() const { return options.ready == nullptr || options.ready->load(); }
  void DoAccept();
  void OnAcceptError(const beast::error_code& ec);

  // Takes one of the --max_connections slots for a WebSocket; false when all are taken.
  bool TakeSlot() {
    int64_t before = counters.slots.fetch_add(1, std::memory_order_relaxed);
    if (options.max_connections == 0 || before < int64_t{options.max_connections}) return true;
    counters.slots.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
};

// TLS (tls_session.cc). Builds the server context from PEM text; errors say what was wrong.
absl::StatusOr<std::shared_ptr<TlsContext>> MakeTlsContext(const std::string& cert_pem,
                                                           const std::string& key_pem);
// Serves one accepted connection over TLS: handshake (bounded), then HTTP and wss:// upgrades.
void RunTlsHttpSession(tcp::socket&& socket, EdgeServer::Impl& server);

}  // namespace push::edge
