#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace push::redis {

// Where a Redis server is: --redis=redis://[[user]:password@]host:port[/db].
struct Endpoint {
  std::string host;
  int port = 6379;
  int db = 0;
  // AUTH after each connect when `password` is set: `AUTH password` (Redis's requirepass, the
  // ACL user "default"), or `AUTH user password` with an ACL user.
  std::string user = {};  // (default initializers: Endpoint{host, port} leaves them empty)
  std::string password = {};
};

// redis://[[user]:password@]host:port[/db]; the user and password are percent-decoded
// ("%40" for '@', "%3A" for ':').
absl::StatusOr<Endpoint> ParseUrl(std::string_view url);

// The AUTH command for `endpoint`, or an empty vector without a password.
std::vector<std::string> AuthCommand(const Endpoint& endpoint);

// A TCP port, 1 to 65535, written in decimal: the port of a URL, a seed or a redirect.
bool ParsePort(std::string_view text, int* port);

// The seed nodes of a Redis Cluster, --redis_cluster=host:port[,host:port...] (CONTRACT §7).
// The port is required (a cluster's nodes rarely all sit on 6379, and a bare IPv6 address would
// be ambiguous); an IPv6 host is written in brackets, "[::1]:7000". Spaces around an entry are
// ignored; an empty list or entry, a missing host or a bad port is an error naming the entry.
absl::StatusOr<std::vector<Endpoint>> ParseSeeds(std::string_view seeds);

}  // namespace push::redis
