#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace push::edge {

// The /ws frames the edge writes besides messages (CONTRACT §3), and the frames a client may
// send. A message's own frame is encoded once at append time (Message::header, common/delivery/
// message.h), since every recipient and the store share it.

// `device_id`: empty = none (the field is left out).
std::string EncodeWelcome(std::string_view connection_id, std::string_view user_id, uint64_t seq,
                          std::string_view device_id = {});
std::string EncodeGap(uint64_t from, uint64_t to);

// A frame a client may send on /ws: {"type":"ack","seq":N} or, with --auth=jwt,
// {"type":"refresh","token":"<jwt>"}.
struct ClientFrame {
  enum class Type { kAck, kRefresh };
  Type type = Type::kAck;
  uint64_t seq = 0;   // kAck
  std::string token;  // kRefresh
};

// Parses a client text frame; the error says what is wrong (it becomes the close reason).
bool ParseClientFrame(std::string_view text, ClientFrame* out, std::string* error);

}  // namespace push::edge
