#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace push {

// A request target split into its decoded path and query parameters.
struct RequestTarget {
  std::string path;
  std::vector<std::pair<std::string, std::string>> params;

  // The first value of `name`, or nullptr.
  const std::string* Param(std::string_view name) const;
};

// Splits "/path?a=1&b=x%40y" and percent-decodes both parts ('+' in the query is a space).
absl::StatusOr<RequestTarget> ParseRequestTarget(std::string_view target);

// Percent-decodes `in`; fails on a truncated or non-hex escape.
absl::StatusOr<std::string> PercentDecode(std::string_view in, bool plus_is_space);

}  // namespace push
