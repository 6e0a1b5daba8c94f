#pragma once

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

}  // namespace push
