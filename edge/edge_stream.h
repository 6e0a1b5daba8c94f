#pragma once

// Internal to edge/: includes Asio. The socket of a plain (not TLS) WebSocket session
// (websocket_session.h).

#include <sys/types.h>

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace push::edge {

namespace net = boost::asio;

// A plain connection's socket, after its upgrade. The session speaks WebSocket on it itself: it
// writes frames with its send lane and reads with FrameReader. That keeps what an idle
// connection holds small: no WebSocket library state (Beast's stream is ~2.5 KB per connection,
// most of it a fixed read buffer), and no read buffer of its own (reads go to a buffer of the
// thread's while the session waits for the socket to become readable).
class EdgeStream : public net::ip::tcp::socket {
 public:
  explicit EdgeStream(net::ip::tcp::socket&& socket) : net::ip::tcp::socket(std::move(socket)) {}

  // Bytes a client sent right behind its upgrade request, which the HTTP parser read with it:
  // the first of the WebSocket stream. ReadSome returns them before the socket's.
  void SetEarlyBytes(std::string bytes) {
    if (!bytes.empty()) early_ = std::make_unique<std::string>(std::move(bytes));
  }
  // Whether some of them are still unread: the socket's readability then says nothing.
  bool HasEarlyBytes() const { return early_ != nullptr; }

  // Reads without blocking, like recv with MSG_DONTWAIT: the bytes read, 0 at the end of the
  // stream, -1 with errno set (EAGAIN when nothing has arrived).
  ssize_t ReadSome(uint8_t* out, size_t size);

 private:
  // Usually null: an idle connection pays one pointer for them.
  std::unique_ptr<std::string> early_;
};

// The answer to a valid upgrade request (HttpSession has checked it: CheckUpgrade) with
// Sec-WebSocket-Key `key`: 101 Switching Protocols, and Sec-WebSocket-Accept (RFC 6455 4.2.2).
std::string UpgradeResponse(std::string_view key);

}  // namespace push::edge
