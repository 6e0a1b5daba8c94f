#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace push {

// One stored message. Its `/ws` frame is `header` + `data` + "}": the header (type, seq, id, ts)
// is encoded once at append time, and the data is shared, unchanged, by the store, every
// connection that sends it and, for a broadcast, every recipient. Compatibility connections send
// `data` alone.
struct Message {
  uint64_t seq = 0;
  int64_t ts_ms = 0;
  int64_t appended_ns = 0;  // monotonic clock, for the delivery latency histogram
  absl::Time expires_at;
  std::string id;
  std::string header;  // {"type":"message","seq":N,"id":"...","ts":T,"data":
  std::shared_ptr<const std::string> payload;

  std::string_view data() const { return *payload; }
  size_t FrameSize() const { return header.size() + payload->size() + 1; }
  // The whole frame as one string (tests and diagnostics; the hot path writes the parts).
  std::string Frame() const { return header + *payload + "}"; }
  // Approximate memory held, for store accounting (a shared payload counts for each holder).
  size_t Footprint() const {
    return sizeof(Message) + HeapBytes(header) + HeapBytes(id) + sizeof(std::string) +
           HeapBytes(*payload) + 64;  // 64: the two shared_ptr control blocks and malloc slack
  }
  static size_t HeapBytes(const std::string& s) {
    return s.capacity() > 15 ? s.capacity() + 1 : 0;  // libstdc++ keeps up to 15 bytes inline
  }
};

using MessagePtr = std::shared_ptr<const Message>;

MessagePtr MakeMessage(uint64_t seq, std::string id, absl::Time now, absl::Time expires_at,
                       std::shared_ptr<const std::string> payload);
inline MessagePtr MakeMessage(uint64_t seq, std::string id, absl::Time now, absl::Time expires_at,
                              std::string_view data) {
  return MakeMessage(seq, std::move(id), now, expires_at, std::make_shared<std::string>(data));
}

}  // namespace push
