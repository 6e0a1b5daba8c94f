#pragma once

// The frames a WebSocket client sends, read from the bytes as they arrive (RFC 6455, server side,
// no extensions). No socket and no Beast: the plain session (websocket_session.h) feeds it what
// each read returned, from a buffer of the thread's, and acts on the events; tests and a fuzzer
// feed it byte strings.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"

namespace push::edge {

class FrameReader {
 public:
  struct Event {
    enum class Kind : uint8_t {
      kText,    // a whole text message (valid UTF-8), its fragments joined
      kBinary,  // a whole binary message
      kPing,
      kPong,
      kClose,  // the peer's close frame: `code` (0 when it sent none) and its reason
      kFail,   // a violation of the protocol: close with `code` (1002, 1007 or 1009), `what` says
    };
    Kind kind;
    // The message, the ping's or pong's payload, or the close reason; valid during the call.
    std::string_view payload;
    uint16_t code = 0;
    const char* what = "";
  };
  using Sink = absl::FunctionRef<void(const Event&)>;

  // `max_message`: the largest message (all its fragments) taken; a frame that would pass it
  // fails with 1009 as soon as its header is read.
  explicit FrameReader(uint32_t max_message) : max_message_(max_message) {}

  // Reads `data` (unmasked in place), calling `sink` for each event, in order. After a close or a
  // failure the reader is done: it reads nothing more.
  void Feed(uint8_t* data, size_t size, Sink sink);

  bool done() const { return done_; }
  // Inside a frame or a fragmented message (the reader holds part of it).
  bool partial() const { return have_ > 0 || in_frame_ || message_op_ != 0; }

 private:
  // The header is complete in header_: checks it and starts the frame (or fails).
  void StartFrame(Sink sink);
  // The current frame's payload is complete. `payload` is all of it when it came in one piece
  // and is not part of a fragmented message; otherwise the reader's buffers hold it.
  void EndFrame(std::string_view payload, bool whole, Sink sink);
  void EndControl(std::string_view payload, Sink sink);
  void EndMessage(uint8_t op, std::string_view message, Sink sink);
  void Fail(uint16_t code, const char* what, Sink sink);
  // The UTF-8 of the text message so far (RFC 3629), checked as its bytes arrive, so that text
  // that is not UTF-8 fails at once (as Beast did), not when its last fragment comes. False once
  // the bytes cannot start valid UTF-8.
  bool CheckUtf8(const uint8_t* data, size_t size);

  uint8_t utf8_need_ = 0;   // continuation bytes the current character still needs
  uint8_t utf8_lo_ = 0x80;  // the range of the next continuation byte
  uint8_t utf8_hi_ = 0xbf;

  uint32_t max_message_;
  uint32_t remain_ = 0;    // payload bytes of the current frame still to come
  uint32_t received_ = 0;  // payload bytes of the current frame so far
  uint8_t header_[14] = {};
  uint8_t mask_[4] = {};
  uint8_t have_ = 0;        // header bytes so far, while the header is not complete
  uint8_t op_ = 0;          // the current frame's opcode
  uint8_t message_op_ = 0;  // inside a fragmented message: its opcode (1 or 2); 0 otherwise
  bool in_frame_ = false;   // the header is read, the payload is coming
  bool fin_ = false;
  bool done_ = false;
  // What came so far of a frame that arrived in pieces, or of a fragmented message: null (no
  // memory) between frames.
  std::unique_ptr<std::string> control_;  // the current control frame
  std::unique_ptr<std::string> message_;  // the current message (all its frames so far)
};

// Whether a close frame may carry `code` (RFC 6455 7.4; 1004-1006, 1014, 1015, 1016-2999 and
// below 1000 may not).
bool IsValidCloseCode(uint16_t code);

}  // namespace push::edge
