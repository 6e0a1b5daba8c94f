#include "edge/send_queue.h"

namespace push::edge {

size_t SendQueue::EncodeHeader(Opcode opcode, uint64_t size, uint8_t* out) {
  if (opcode == Opcode::kRaw) return 0;
  out[0] = static_cast<uint8_t>(0x80 | static_cast<uint8_t>(opcode));  // FIN, no RSV bits
  if (size < 126) {
    out[1] = static_cast<uint8_t>(size);
    return 2;
  }
  if (size <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<uint8_t>(size >> 8);
    out[3] = static_cast<uint8_t>(size);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<uint8_t>(size >> (8 * (7 - i)));
  return 10;
}

std::array<iovec, 3> SendQueue::Payload(const OutFrame& f) const {
  auto piece = [](const void* p, size_t n) { return iovec{const_cast<void*>(p), n}; };
  if (!f.message) return {piece(f.text->data(), f.text->size()), iovec{}, iovec{}};
  const std::string& data = *f.message->payload;
  if (compat_) return {piece(data.data(), data.size()), iovec{}, iovec{}};
  return {piece(f.message->header.data(), f.message->header.size()),
          piece(data.data(), data.size()), piece("}", 1)};
}

int64_t SendQueue::PushFront(OutFrame frame) {
  size_t at = started() ? 1 : 0;
  while (at < frames_.size() && frames_.at(at).frame.opcode == Opcode::kRaw) ++at;
  if (frame.opcode == Opcode::kPong) {
    // The control frames waiting at the front (each went ahead of the ones before it).
    for (size_t i = at; i < frames_.size(); ++i) {
      Opcode op = frames_.at(i).frame.opcode;
      if (op != Opcode::kPing && op != Opcode::kPong) break;
      if (op != Opcode::kPong) continue;
      Entry& e = frames_.at_mutable(i);
      const int64_t before = static_cast<int64_t>(e.frame.Size(compat_));
      bytes_ -= static_cast<uint64_t>(before);
      e = MakeEntry(std::move(frame));
      return static_cast<int64_t>(e.frame.Size(compat_)) - before;
    }
  }
  Entry e = MakeEntry(std::move(frame));
  const auto added = static_cast<int64_t>(e.frame.Size(compat_));
  frames_.insert(at, std::move(e));
  return added;
}

size_t SendQueue::WireSize(const Entry& e) const { return e.header_size + e.frame.Size(compat_); }

size_t SendQueue::Gather(iovec* iov, size_t max) const {
  size_t count = 0;
  size_t skip = written_;  // only the first frame can be partly written
  for (size_t i = 0; i < frames_.size() && count + 4 <= max; ++i) {
    const Entry& e = frames_.at(i);
    auto add = [&](const void* p, size_t n) {
      if (n <= skip) {
        skip -= n;
        return;
      }
      iov[count++] = iovec{const_cast<char*>(static_cast<const char*>(p)) + skip, n - skip};
      skip = 0;
    };
    add(e.header, e.header_size);
    for (const iovec& piece : Payload(e.frame)) {
      if (piece.iov_len > 0) add(piece.iov_base, piece.iov_len);
    }
  }
  return count;
}

}  // namespace push::edge
