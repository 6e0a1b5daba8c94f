#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace push {

// Checks that `text` is exactly one JSON value (surrounding whitespace allowed) in valid UTF-8,
// without building a document. The error says where and what went wrong.
absl::Status ValidateJson(std::string_view text);

// Appends `s` as a JSON string literal (quotes included).
void AppendJsonString(std::string* out, std::string_view s);

// True when `s` is well-formed UTF-8.
bool IsValidUtf8(std::string_view s);

}  // namespace push
