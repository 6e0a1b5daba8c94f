#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace push {

// One stored message. The `/ws` envelope is encoded once at append time and shared, unchanged,
// by the store and every connection that sends it; compatibility connections send the `data`
// slice of the same buffer.
struct Message {
  uint64_t seq = 0;
  int64_t ts_ms = 0;
  absl::Time expires_at;
  std::string id;
  std::string frame;  // {"type":"message","seq":N,"id":"...","ts":T,"data":<data>}
  uint32_t data_offset = 0;
  uint32_t data_size = 0;

  std::string_view data() const { return std::string_view(frame).substr(data_offset, data_size); }
  // Approximate memory held, for store accounting.
  size_t Footprint() const { return sizeof(Message) + frame.capacity() + id.capacity() + 64; }
};

using MessagePtr = std::shared_ptr<const Message>;

MessagePtr MakeMessage(uint64_t seq, std::string id, absl::Time now, absl::Time expires_at,
                       std::string_view data);

std::string EncodeWelcome(std::string_view connection_id, std::string_view user_id, uint64_t seq);
std::string EncodeGap(uint64_t from, uint64_t to);

// A frame a client may send on /ws.
struct ClientFrame {
  enum class Type { kAck };
  Type type = Type::kAck;
  uint64_t seq = 0;
};

// Parses a client text frame; the error says what is wrong (it becomes the close reason).
bool ParseClientFrame(std::string_view text, ClientFrame* out, std::string* error);

}  // namespace push
