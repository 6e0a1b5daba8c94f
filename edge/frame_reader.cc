#include "edge/frame_reader.h"

#include <algorithm>
#include <cstring>

#include "common/base/close.h"
#include "common/json/json.h"

namespace push::edge {

namespace {

// The length of a client frame's header from its first two bytes (a client's frames are masked;
// an unmasked one fails once its header is read).
size_t HeaderSize(const uint8_t* h) {
  size_t size = 2;
  const uint8_t length = h[1] & 0x7f;
  if (length == 126) size += 2;
  if (length == 127) size += 8;
  if (h[1] & 0x80) size += 4;
  return size;
}

void Unmask(uint8_t* data, size_t size, const uint8_t* mask, uint32_t offset) {
  for (size_t i = 0; i < size; ++i) data[i] ^= mask[(offset + i) & 3];
}

std::string& Grown(std::unique_ptr<std::string>& buffer) {
  if (!buffer) buffer = std::make_unique<std::string>();
  return *buffer;
}

}  // namespace

bool IsValidCloseCode(uint16_t code) {
  if (code < 1000) return false;
  if (code >= 1016 && code <= 2999) return false;
  switch (code) {
    case 1004:
    case 1005:
    case 1006:
    case 1014:
    case 1015:
      return false;
    default:
      return code <= 4999;
  }
}

void FrameReader::Feed(uint8_t* data, size_t size, Sink sink) {
  while (size > 0 && !done_) {
    if (!in_frame_) {
      // The header: two bytes say how long it is.
      size_t need = have_ < 2 ? 2 : HeaderSize(header_);
      size_t take = std::min(need - have_, size);
      std::memcpy(header_ + have_, data, take);
      have_ = static_cast<uint8_t>(have_ + take);
      data += take;
      size -= take;
      if (have_ == 2) need = HeaderSize(header_);
      if (have_ == need) StartFrame(sink);
      continue;
    }
    size_t take = std::min<size_t>(remain_, size);
    uint8_t* piece = data;
    data += take;
    size -= take;
    Unmask(piece, take, mask_, received_);
    remain_ -= static_cast<uint32_t>(take);
    const bool control = op_ >= 0x8;
    const bool text = op_ == 0x1 || (op_ == 0x0 && message_op_ == 0x1);
    if (text && !CheckUtf8(piece, take)) {
      Fail(kCloseBadText, "text that is not UTF-8", sink);
      break;
    }
    std::string_view bytes(reinterpret_cast<const char*>(piece), take);
    if (remain_ == 0 && received_ == 0 && (control || message_op_ == 0)) {
      EndFrame(bytes, /*whole=*/true, sink);  // in one piece: no copy
      continue;
    }
    Grown(control ? control_ : message_).append(bytes);
    received_ += static_cast<uint32_t>(take);
    if (remain_ == 0) EndFrame({}, /*whole=*/false, sink);
  }
}

void FrameReader::StartFrame(Sink sink) {
  const uint8_t* h = header_;
  have_ = 0;  // the next byte after this frame starts a header
  const bool fin = (h[0] & 0x80) != 0;
  const uint8_t op = h[0] & 0x0f;
  const bool control = op >= 0x8;
  if ((h[0] & 0x70) != 0) return Fail(kCloseProtocol, "reserved bits set", sink);
  if (op != 0x0 && op != 0x1 && op != 0x2 && op != 0x8 && op != 0x9 && op != 0xa) {
    return Fail(kCloseProtocol, "reserved opcode", sink);
  }
  if (control) {
    if (!fin) return Fail(kCloseProtocol, "fragmented control frame", sink);
    if ((h[1] & 0x7f) > 125) return Fail(kCloseProtocol, "control frame over 125 bytes", sink);
  } else if (op == 0x0 && message_op_ == 0) {
    return Fail(kCloseProtocol, "continuation frame outside a message", sink);
  } else if (op != 0x0 && message_op_ != 0) {
    return Fail(kCloseProtocol, "new message inside a fragmented one", sink);
  }
  if ((h[1] & 0x80) == 0) return Fail(kCloseProtocol, "unmasked client frame", sink);
  uint64_t length = h[1] & 0x7f;
  size_t pos = 2;
  if (length == 126) {
    length = (uint64_t{h[2]} << 8) | h[3];
    if (length < 126) return Fail(kCloseProtocol, "frame length not in its shortest form", sink);
    pos = 4;
  } else if (length == 127) {
    length = 0;
    for (int i = 2; i < 10; ++i) length = (length << 8) | h[i];
    if (length >> 63) return Fail(kCloseProtocol, "frame length over 2^63", sink);
    if (length <= 0xffff)
      return Fail(kCloseProtocol, "frame length not in its shortest form", sink);
    pos = 10;
  }
  if (!control) {
    const uint64_t before = message_ ? message_->size() : 0;
    if (before + length > max_message_) return Fail(kCloseTooBig, "message too big", sink);
  }
  std::memcpy(mask_, h + pos, 4);
  if (op == 0x1) utf8_need_ = 0;  // a new text message
  op_ = op;
  fin_ = fin;
  remain_ = static_cast<uint32_t>(length);
  received_ = 0;
  in_frame_ = true;
  if (!control && op != 0x0 && !fin) {
    message_op_ = op;  // the first frame of a fragmented message
    Grown(message_);   // its frames are joined there, empty ones too
  }
  if (remain_ == 0) EndFrame({}, /*whole=*/control || message_op_ == 0, sink);
}

void FrameReader::EndFrame(std::string_view payload, bool whole, Sink sink) {
  in_frame_ = false;
  if (op_ >= 0x8) {
    if (whole) return EndControl(payload, sink);
    std::unique_ptr<std::string> control = std::move(control_);
    return EndControl(*control, sink);
  }
  if (!fin_) return;  // more fragments to come
  if (whole) return EndMessage(op_, payload, sink);
  std::unique_ptr<std::string> message = std::move(message_);
  const uint8_t op = message_op_ != 0 ? message_op_ : op_;
  message_op_ = 0;
  EndMessage(op, message ? std::string_view(*message) : std::string_view(), sink);
}

void FrameReader::EndMessage(uint8_t op, std::string_view message, Sink sink) {
  // Every byte passed CheckUtf8 as it came: what is left is a character not finished.
  if (op == 0x1 && utf8_need_ != 0) return Fail(kCloseBadText, "text that is not UTF-8", sink);
  Event event{op == 0x1 ? Event::Kind::kText : Event::Kind::kBinary, message};
  sink(event);
}

void FrameReader::EndControl(std::string_view payload, Sink sink) {
  if (op_ == 0x9) return sink(Event{Event::Kind::kPing, payload});
  if (op_ == 0xa) return sink(Event{Event::Kind::kPong, payload});
  // A close frame: nothing is read after it.
  if (payload.size() == 1) return Fail(kCloseProtocol, "close frame with a 1-byte payload", sink);
  uint16_t code = 0;
  if (!payload.empty()) {
    code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                 static_cast<uint8_t>(payload[1]));
    if (!IsValidCloseCode(code)) return Fail(kCloseProtocol, "invalid close code", sink);
    payload.remove_prefix(2);
    if (!IsValidUtf8(payload)) return Fail(kCloseBadText, "close reason that is not UTF-8", sink);
  }
  done_ = true;
  control_.reset();
  message_.reset();
  sink(Event{Event::Kind::kClose, payload, code});
}

bool FrameReader::CheckUtf8(const uint8_t* data, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    const uint8_t b = data[i];
    if (utf8_need_ > 0) {
      if (b < utf8_lo_ || b > utf8_hi_) return false;
      utf8_lo_ = 0x80;
      utf8_hi_ = 0xbf;
      --utf8_need_;
      continue;
    }
    if (b < 0x80) continue;
    // The lead byte fixes the length and the range of the first continuation byte, which rules
    // out overlong forms, surrogates and code points past U+10FFFF.
    utf8_lo_ = 0x80;
    utf8_hi_ = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
      utf8_need_ = 1;
    } else if (b == 0xe0) {
      utf8_need_ = 2;
      utf8_lo_ = 0xa0;
    } else if (b == 0xed) {
      utf8_need_ = 2;
      utf8_hi_ = 0x9f;
    } else if (b >= 0xe1 && b <= 0xef) {
      utf8_need_ = 2;
    } else if (b == 0xf0) {
      utf8_need_ = 3;
      utf8_lo_ = 0x90;
    } else if (b >= 0xf1 && b <= 0xf3) {
      utf8_need_ = 3;
    } else if (b == 0xf4) {
      utf8_need_ = 3;
      utf8_hi_ = 0x8f;
    } else {
      return false;
    }
  }
  return true;
}

void FrameReader::Fail(uint16_t code, const char* what, Sink sink) {
  done_ = true;
  in_frame_ = false;
  control_.reset();
  message_.reset();
  sink(Event{Event::Kind::kFail, {}, code, what});
}

}  // namespace push::edge
