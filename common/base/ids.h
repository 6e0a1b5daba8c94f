#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace push {

inline constexpr size_t kMaxUserIdBytes = 128;
inline constexpr size_t kMaxMessageIdBytes = 128;
inline constexpr size_t kMaxDeviceIdBytes = 64;

// A user id is 1-128 bytes of [A-Za-z0-9._:@-].
absl::Status ValidateUserId(std::string_view user_id);

// A caller-chosen message id is 1-128 printable ASCII bytes other than '"' and '\'
// (it is written into JSON frames verbatim).
absl::Status ValidateMessageId(std::string_view message_id);

// A device id (the device_id query parameter) is 1-64 bytes of [A-Za-z0-9._:-].
absl::Status ValidateDeviceId(std::string_view device_id);

// Random, URL-safe identifiers (hex). Connection ids are 20 characters, message ids 24.
std::string NewConnectionId();
std::string NewMessageId();

// A message id that spells its seq: 12 random hex digits, then the seq's low 48 bits in 12 hex
// digits (24 in all, lowercase), so that a store can find the message by its seq without indexing
// the id.
inline constexpr uint64_t kSeqMessageIdMask = (uint64_t{1} << 48) - 1;
std::string NewSeqMessageId(uint64_t seq);
// The low 48 bits of the seq an id of that shape spells (whoever made it); nullopt for any other
// id.
std::optional<uint64_t> SeqOfMessageId(std::string_view message_id);

}  // namespace push
