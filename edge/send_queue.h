#pragma once

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "common/delivery/message.h"
#include "edge/frame_queue.h"

namespace push::edge {

// WebSocket opcodes of the frames the server writes itself; kRaw is bytes sent as they are,
// without a frame (the upgrade's 101 response, which goes first).
enum class Opcode : uint8_t { kText = 0x1, kClose = 0x8, kPing = 0x9, kPong = 0xA, kRaw = 0xFF };

// One outbound WebSocket frame: a shared stored message, or a frame of our own (welcome, gap,
// ping, pong, close; or the upgrade's response). The bytes live on the heap (the message, or
// `text`), so moving an OutFrame (the queue may) never moves bytes a write points to.
struct OutFrame {
  MessagePtr message;
  std::shared_ptr<const std::string> text;
  bool live = false;  // published now, not replayed from the stream
  Opcode opcode = Opcode::kText;

  // The payload's size: what ListClients' queued_bytes and the send-queue limit count.
  size_t Size(bool compat) const {
    if (!message) return text->size();
    return compat ? message->payload->size() : message->FrameSize();
  }
};

// The frames a connection has yet to write, as WebSocket frames on the wire: it encodes each
// frame's header (server frames are unmasked and unfragmented), gathers the unsent bytes of the
// first frames into one iovec array (one writev for everything queued), and takes back how many
// bytes the socket accepted. A plain class: no socket, no locks (the session holds its own).
//
// Compatibility connections (`compat`) send a message's data alone; others the /ws envelope.
class SendQueue {
 public:
  // At most this many iovecs per Gather (each frame takes up to four).
  static constexpr size_t kMaxIovecs = 128;

  explicit SendQueue(bool compat) : compat_(compat) {}

  bool empty() const { return frames_.empty(); }
  size_t size() const { return frames_.size(); }
  // Whether the first frame is partly on the wire (then it must be finished, not dropped).
  bool started() const { return written_ > 0; }
  // Payload bytes of the queued frames (OutFrame::Size), the part already written included.
  uint64_t bytes() const { return bytes_; }

  void Push(OutFrame frame) { frames_.push_back(MakeEntry(std::move(frame))); }
  // Queues a control frame ahead of everything not yet started (a ping or pong must not wait
  // behind a backlog of messages: the peer's answer would be late); after a frame partly
  // written, and never before the upgrade's response (kRaw), which must go first. A pong replaces
  // a pong still waiting there (RFC 6455 5.5.3: the latest ping's answer is enough), so a peer
  // that pings without reading holds one pong, not one per ping. Returns the payload bytes the
  // queue grew by (negative when a longer pong was replaced).
  int64_t PushFront(OutFrame frame);

  // Drops queued frames from the back, keeping the first `keep` (and a started first frame).
  // Returns the payload bytes dropped.
  uint64_t DropBack(size_t keep) {
    if (started() && keep == 0) keep = 1;
    uint64_t dropped = 0;
    while (frames_.size() > keep) {
      dropped += frames_.back().frame.Size(compat_);
      frames_.pop_back();
    }
    bytes_ -= dropped;
    return dropped;
  }

  // The first frame (TLS writes frames one at a time through Beast).
  const OutFrame& front() const { return frames_.at(0).frame; }
  // The first frame was written whole: calls `sent(frame)` and drops it.
  template <class F>
  void PopFront(F&& sent) {
    Consume(WireSize(frames_.at(0)) - written_, std::forward<F>(sent));
  }

  // Fills `iov` (room for `max` entries) with the unsent bytes of the first frames, in order,
  // headers included; returns how many entries were filled (0 when empty).
  size_t Gather(iovec* iov, size_t max) const;

  // `n` bytes (from what Gather returned, in order) reached the socket. Calls `sent(frame)` for
  // each frame now fully written, oldest first, then drops it.
  template <class F>
  void Consume(size_t n, F&& sent) {
    while (n > 0 && !frames_.empty()) {
      Entry& e = frames_.front();
      size_t left = WireSize(e) - written_;
      if (n < left) {
        written_ += n;
        return;
      }
      n -= left;
      written_ = 0;
      bytes_ -= e.frame.Size(compat_);
      sent(e.frame);
      frames_.pop_front();
    }
  }

  // The WebSocket header of a server frame with `opcode` and a payload of `size` bytes; returns
  // its length (2, 4 or 10; 0 for kRaw).
  static size_t EncodeHeader(Opcode opcode, uint64_t size, uint8_t* out);

  // A frame's payload in up to three pieces (unused ones empty): a message's header, data and "}"
  // (no copy of the shared data), in compat mode the data alone, or the text.
  std::array<iovec, 3> Payload(const OutFrame& f) const;

 private:
  struct Entry {
    OutFrame frame;
    // The WebSocket frame header, encoded once. Inline, so it moves with the entry: Gather's
    // iovecs point into it, which is safe because they are used (sendmsg) and consumed before
    // the queue changes again.
    uint8_t header[10] = {};
    uint8_t header_size = 0;
  };
  Entry MakeEntry(OutFrame frame) {
    Entry e{std::move(frame)};
    size_t size = e.frame.Size(compat_);
    bytes_ += size;
    e.header_size = static_cast<uint8_t>(EncodeHeader(e.frame.opcode, size, e.header));
    return e;
  }
  size_t WireSize(const Entry& e) const;

  FrameQueue<Entry> frames_;
  uint32_t written_ = 0;  // bytes of the first frame already written (header included)
  bool compat_;
  uint64_t bytes_ = 0;
};

}  // namespace push::edge
