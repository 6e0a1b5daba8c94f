#pragma once

// Internal to edge/: includes Asio and Beast. The WebSocket session's socket (websocket_session.h).

#include <sys/types.h>
#include <sys/uio.h>

#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/role.hpp>
#include <cstdint>
#include <string>

namespace push::edge {

namespace beast = boost::beast;
namespace net = boost::asio;

// The WebSocket's TCP layer: a plain socket (Beast's tcp_stream would add its own timer state to
// every idle connection; the WebSocket layer has its own timeouts). Its own teardown (found by ADL
// from Beast's close paths) sends FIN and completes at once, instead of Beast's default of waiting,
// without a time limit, for the peer to close too: a peer that broke the protocol and lingers must
// not stay listed. The session closes the socket a moment later (see End) so the close frame is
// not lost to a RST.
//
// Its reads never hand the WebSocket layer bytes past the end of the current frame (it peeks at
// each frame's header first), so once Beast has delivered a whole message it holds nothing
// unread. An idle session can then wait for the socket to become readable with a small wait
// operation instead of keeping Beast's much larger read operation pending (see
// WebSocketSession::DoRead): that is what lets an idle connection cost less memory.
class EdgeStream : public net::ip::tcp::socket {
 public:
  explicit EdgeStream(net::ip::tcp::socket&& socket) : net::ip::tcp::socket(std::move(socket)) {}

  // Bytes a client sent right behind its upgrade request, which the HTTP parser read with it:
  // the first of the WebSocket stream. Every read below takes them before the socket's.
  void SetEarlyBytes(std::string bytes) {
    if (!bytes.empty()) early_ = std::make_unique<std::string>(std::move(bytes));
  }
  // Whether some of them are still unread: the socket's readability then says nothing.
  bool HasEarlyBytes() const { return early_ != nullptr; }

  // What the socket has of the current frame, at most to its end, once the socket is readable
  // (the AsyncReadStream operation Beast reads through; it hides the socket's own). Every read
  // waits for readability first (an epoll_ctl and a pass through the scheduler: client frames
  // are rare). Only this asynchronous read is bounded: nothing may read the socket through the
  // hidden synchronous read_some. A wait that reports readable with nothing to read (Linux TCP
  // does not) would only cost another wait, not a busy loop of reads.
  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence&) = delete;
  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence&, beast::error_code&) = delete;
  template <class MutableBufferSequence, class ReadToken>
  auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) {
    return net::async_compose<ReadToken, void(beast::error_code, std::size_t)>(
        FrameReadOp<MutableBufferSequence>{this, buffers}, token,
        static_cast<net::ip::tcp::socket&>(*this));
  }

  enum class Next { kNothing, kPong, kPing, kPartial, kOther };
  // At a frame boundary: whether the next frame is a complete, well-formed pong, or (with
  // `take_ping`) ping, which it then consumes, putting a ping's unmasked payload in `payload`, so
  // that heartbeats either way never need a WebSocket read; or only the start of one has arrived
  // (kPartial); or nothing has arrived; or something else is there for the WebSocket layer
  // (another frame, an error, the end).
  Next ConsumeControl(bool take_ping, std::string* payload);

 private:
  template <class Buffers>
  struct FrameReadOp {
    EdgeStream* stream;
    Buffers buffers;
    bool waited = false;
    template <class Self>
    void operator()(Self& self, beast::error_code ec = {}) {
      // Waits first even when bytes are there (the wait then completes at once), so the
      // handler never runs inside the call that started the read.
      if (!waited) {
        waited = true;
        if (stream->HasEarlyBytes()) {
          net::post(stream->get_executor(), std::move(self));
        } else {
          stream->async_wait(net::socket_base::wait_read, std::move(self));
        }
        return;
      }
      if (ec) return self.complete(ec, 0);
      std::array<net::mutable_buffer, 4> pieces;
      size_t count = 0;
      for (auto it = net::buffer_sequence_begin(buffers);
           it != net::buffer_sequence_end(buffers) && count < pieces.size(); ++it) {
        net::mutable_buffer piece = *it;
        if (piece.size() > 0) pieces[count++] = piece;
      }
      if (count == 0) return self.complete(ec, 0);
      size_t n = stream->ReadFrameBytes(pieces.data(), count, ec);
      if (ec == net::error::would_block || ec == net::error::try_again) {
        stream->async_wait(net::socket_base::wait_read, std::move(self));
        return;
      }
      self.complete(ec, n);
    }
  };

  // Reads without blocking at most to the end of the current frame; would_block when nothing
  // has arrived, eof at the end of the stream.
  size_t ReadFrameBytes(const net::mutable_buffer* pieces, size_t count, beast::error_code& ec);
  // Copies up to `n` of the next bytes without taking them (the early bytes, then the socket's):
  // how many, or the socket's error (-1 and errno, or 0 at its end) when there were none.
  ssize_t Peek(uint8_t* out, size_t n);
  // Takes the next bytes into `iov` (the early bytes while there are any, else the socket's),
  // like recvmsg without blocking.
  ssize_t Take(const iovec* iov, size_t count);

  // Usually null: an idle connection pays one pointer for them.
  std::unique_ptr<std::string> early_;
  // Frames over 4 GiB are refused by the WebSocket layer once it has read their header (1009),
  // so 32 bits hold every size and position the reads need; the stream stays as small as it was.
  uint32_t frame_size_ = 0;  // header plus payload of the current frame; 0 while its header is
                             // not complete
  uint32_t frame_pos_ = 0;   // bytes of the current frame handed on so far
  uint8_t header_[14] = {};  // the current frame's header bytes seen so far
};

void teardown(beast::role_type role, EdgeStream& stream, beast::error_code& ec);

template <class TeardownHandler>
void async_teardown(beast::role_type, EdgeStream& stream, TeardownHandler&& handler) {
  beast::error_code ignored;
  stream.shutdown(net::socket_base::shutdown_send, ignored);
  net::post(stream.get_executor(),
            beast::bind_front_handler(std::forward<TeardownHandler>(handler), beast::error_code{}));
}

}  // namespace push::edge
