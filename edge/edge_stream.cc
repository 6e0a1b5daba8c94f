#include "edge/edge_stream.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace push::edge {

namespace {

// The size of a WebSocket frame (RFC 6455 5.2) from its first `have` bytes: header plus payload,
// or 0 while the header is not complete.
uint32_t FrameSize(const uint8_t* h, size_t have) {
  if (have < 2) return 0;
  uint64_t header = 2;
  uint64_t length = h[1] & 0x7f;
  if (length == 126) header += 2;
  if (length == 127) header += 8;
  if (h[1] & 0x80) header += 4;  // the masking key
  if (have < header) return 0;
  if (length == 126) length = (uint64_t{h[2]} << 8) | h[3];
  if (length == 127) {
    length = 0;
    for (int i = 2; i < 10; ++i) length = (length << 8) | h[i];
  }
  // A length this large is refused by the WebSocket layer (1009) once it has read the header.
  return length > UINT32_MAX - header ? UINT32_MAX : header + length;
}

beast::error_code LastError(ssize_t result) {
  if (result == 0) return net::error::eof;
  if (errno == EAGAIN || errno == EWOULDBLOCK) return net::error::would_block;
  return beast::error_code(errno, net::error::get_system_category());
}

}  // namespace

ssize_t EdgeStream::Peek(uint8_t* out, size_t n) {
  size_t have = 0;
  if (early_) {
    have = std::min(n, early_->size());
    std::memcpy(out, early_->data(), have);
    if (have == n) return static_cast<ssize_t>(have);
  }
  ssize_t peeked = ::recv(native_handle(), out + have, n - have, MSG_PEEK | MSG_DONTWAIT);
  if (peeked > 0) return static_cast<ssize_t>(have) + peeked;
  return have > 0 ? static_cast<ssize_t>(have) : peeked;
}

ssize_t EdgeStream::Take(const iovec* iov, size_t count) {
  if (!early_) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = count;
    return ::recvmsg(native_handle(), &msg, MSG_DONTWAIT);
  }
  size_t taken = 0;
  for (size_t i = 0; i < count && taken < early_->size(); ++i) {
    size_t n = std::min(iov[i].iov_len, early_->size() - taken);
    std::memcpy(iov[i].iov_base, early_->data() + taken, n);
    taken += n;
  }
  early_->erase(0, taken);
  if (early_->empty()) early_.reset();
  return static_cast<ssize_t>(taken);
}

size_t EdgeStream::ReadFrameBytes(const net::mutable_buffer* pieces, size_t count,
                                  beast::error_code& ec) {
  ec = {};
  uint64_t limit;
  if (frame_size_ == 0) {
    // The header is not complete: look at what has come of it, without taking it yet.
    ssize_t peeked = Peek(header_ + frame_pos_, sizeof(header_) - frame_pos_);
    if (peeked <= 0) {
      ec = LastError(peeked);
      return 0;
    }
    frame_size_ = FrameSize(header_, frame_pos_ + static_cast<size_t>(peeked));
    // Without a whole header, every byte there is part of it.
    limit = frame_size_ != 0 ? frame_size_ - frame_pos_ : static_cast<uint64_t>(peeked);
  } else {
    limit = frame_size_ - frame_pos_;
  }
  std::array<iovec, 4> iov;
  size_t used = 0;
  for (size_t i = 0; i < count && i < iov.size() && limit > 0; ++i) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(pieces[i].size(), limit));
    iov[used++] = {pieces[i].data(), take};
    limit -= take;
  }
  ssize_t got = Take(iov.data(), used);
  if (got <= 0) {
    ec = LastError(got);
    return 0;
  }
  frame_pos_ += static_cast<uint32_t>(got);
  if (frame_size_ != 0 && frame_pos_ >= frame_size_) {
    frame_size_ = 0;  // the next byte starts a frame
    frame_pos_ = 0;
  }
  return static_cast<size_t>(got);
}

EdgeStream::Next EdgeStream::ConsumeControl(bool take_ping, std::string* payload) {
  if (frame_pos_ != 0) return Next::kOther;  // inside a frame: the WebSocket layer's business
  uint8_t frame[2 + 4 + 125];
  ssize_t peeked = Peek(frame, sizeof(frame));
  if (peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Next::kNothing;
  if (peeked < 1) return Next::kOther;  // an error or the end
  // FIN, no reserved bits, opcode pong (or ping); masked (as every client frame must be); at
  // most 125 bytes. Anything else goes to the WebSocket layer, which closes on what is wrong.
  const bool pong = frame[0] == 0x8a;
  const bool ping = frame[0] == 0x89 && take_ping;
  if (!(pong || ping)) return Next::kOther;
  // A control frame not all here yet: wait for the rest rather than hand it to the WebSocket
  // layer, whose read would then stay pending until a data frame came.
  if (peeked < 2) return Next::kPartial;
  if ((frame[1] & 0x80) == 0 || (frame[1] & 0x7f) > 125) return Next::kOther;
  const size_t length = frame[1] & 0x7f;
  const size_t size = 2 + 4 + length;
  if (static_cast<size_t>(peeked) < size) return Next::kPartial;
  // Peek saw all of it: the early bytes and then the socket's give it up at once.
  for (size_t taken = 0; taken < size;) {
    iovec rest{frame + taken, size - taken};
    ssize_t got = Take(&rest, 1);
    if (got <= 0) return Next::kOther;
    taken += static_cast<size_t>(got);
  }
  frame_size_ = 0;
  if (pong) return Next::kPong;
  payload->resize(length);
  for (size_t i = 0; i < length; ++i)
    (*payload)[i] = static_cast<char>(frame[6 + i] ^ frame[2 + i % 4]);
  return Next::kPing;
}

void teardown(beast::role_type, EdgeStream& stream, beast::error_code& ec) {
  stream.shutdown(net::socket_base::shutdown_send, ec);
}

}  // namespace push::edge
