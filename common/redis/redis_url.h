#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace push::redis {

// Where a Redis server is: --redis=redis://host:port[/db].
struct Endpoint {
  std::string host;
  int port = 6379;
  int db = 0;
};

// redis://host:port[/db]
absl::StatusOr<Endpoint> ParseUrl(std::string_view url);

}  // namespace push::redis
