#include "common/base/ids.h"

#include <random>

#include "absl/strings/str_cat.h"

namespace push {
namespace {

bool IsUserIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '@' || c == '-';
}

// A per-thread xorshift generator seeded from the OS: ids need to be unique, not secret.
uint64_t NextRandom() {
  thread_local uint64_t state = [] {
    std::random_device rd;
    uint64_t s = (uint64_t{rd()} << 32) ^ rd();
    return s == 0 ? 0x9E3779B97F4A7C15ull : s;
  }();
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

void AppendHex(std::string* out, uint64_t v, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) out->push_back(kHex[(v >> (i * 4)) & 0xF]);
}

}  // namespace

absl::Status ValidateUserId(std::string_view user_id) {
  if (user_id.empty()) return absl::InvalidArgumentError("user_id is empty");
  if (user_id.size() > kMaxUserIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("user_id is ", user_id.size(), " bytes; at most 128 are allowed"));
  }
  for (char c : user_id) {
    if (!IsUserIdChar(c)) {
      return absl::InvalidArgumentError(
          "user_id may contain only letters, digits and . _ : @ - (1-128 bytes)");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateMessageId(std::string_view message_id) {
  if (message_id.size() > kMaxMessageIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("message_id is ", message_id.size(), " bytes; at most 128 are allowed"));
  }
  for (char c : message_id) {
    if (c < 0x21 || c > 0x7E || c == '"' || c == '\\') {
      return absl::InvalidArgumentError(
          "message_id may contain only printable ASCII without spaces, quotes or backslashes");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateDeviceId(std::string_view device_id) {
  if (device_id.empty()) return absl::InvalidArgumentError("device_id is empty");
  if (device_id.size() > kMaxDeviceIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("device_id is ", device_id.size(), " bytes; at most 64 are allowed"));
  }
  for (char c : device_id) {
    if (c == '@' || !IsUserIdChar(c)) {
      return absl::InvalidArgumentError(
          "device_id may contain only letters, digits and . _ : - (1-64 bytes)");
    }
  }
  return absl::OkStatus();
}

std::string NewConnectionId() {
  std::string id;
  id.reserve(20);
  AppendHex(&id, NextRandom(), 16);
  AppendHex(&id, NextRandom(), 4);
  return id;
}

std::string NewMessageId() {
  std::string id;
  id.reserve(24);
  AppendHex(&id, NextRandom(), 16);
  AppendHex(&id, NextRandom(), 8);
  return id;
}

std::string NewSeqMessageId(uint64_t seq) {
  std::string id;
  id.reserve(24);
  AppendHex(&id, NextRandom(), 12);
  AppendHex(&id, seq & kSeqMessageIdMask, 12);
  return id;
}

std::optional<uint64_t> SeqOfMessageId(std::string_view message_id) {
  if (message_id.size() != 24) return std::nullopt;
  uint64_t seq = 0;
  for (size_t i = 0; i < message_id.size(); ++i) {
    char c = message_id[i];
    int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return std::nullopt;
    if (i >= 12) seq = (seq << 4) | static_cast<uint64_t>(digit);
  }
  return seq;
}

}  // namespace push
