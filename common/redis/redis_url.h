#pragma once

#include <string>
#include <string_view>
#include <vector>

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

// A TCP port, 1 to 65535, written in decimal: the port of a URL, a seed or a redirect.
bool ParsePort(std::string_view text, int* port);

// The seed nodes of a Redis Cluster, --redis_cluster=host:port[,host:port...] (CONTRACT §7).
// The port is required (a cluster's nodes rarely all sit on 6379, and a bare IPv6 address would
// be ambiguous); an IPv6 host is written in brackets, "[::1]:7000". Spaces around an entry are
// ignored; an empty list or entry, a missing host or a bad port is an error naming the entry.
absl::StatusOr<std::vector<Endpoint>> ParseSeeds(std::string_view seeds);

}  // namespace push::redis
