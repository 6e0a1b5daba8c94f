#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace push {

enum class Role { kAll, kApi, kEdge };

// Everything the process is configured with, read once at start from flags/environment.
struct Config {
  std::string grpc_listen = "0.0.0.0:50051";
  std::string ws_listen = "0.0.0.0:8080";
  Role role = Role::kAll;
  std::string redis;
  std::string node_id;
  absl::Duration ping_interval = absl::Seconds(20);
  absl::Duration pong_timeout = absl::Seconds(10);
  uint32_t history_size = 1000;
  absl::Duration history_ttl = absl::Hours(24);
  uint64_t max_message_bytes = 65536;
  uint64_t send_queue_bytes = 1 << 20;
  uint64_t max_queued_bytes = 256ull << 20;  // all send queues together; 0 = no bound
  uint64_t max_store_bytes = 512ull << 20;
  std::string auth = "none";
  std::string jwt_hs256_secret_file;
  std::string jwt_rs256_public_key_file;
  // With --auth=jwt: the key files' contents, read (and checked) at start.
  std::string jwt_hs256_secret;
  std::string jwt_rs256_public_key;
  absl::Duration jwt_leeway = absl::Seconds(30);
  std::vector<std::string> allowed_origins;
  std::string api_key_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // With TLS: the files' contents (PEM), read and checked at start.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  bool grpc_reflection = true;
  // Unary calls that bring no deadline end with DEADLINE_EXCEEDED after this.
  absl::Duration grpc_default_deadline = absl::Seconds(10);
  absl::Duration drain_timeout = absl::Seconds(25);
  int edge_threads = 0;  // 0 = number of cores
  int grpc_threads = 0;  // 0 = half the cores, at least 1
  // Limits of the edge (README, "Limits").
  uint32_t max_connections_per_user = 32;  // 0 = no limit
  uint32_t max_connections = 0;            // 0 = from the open-files limit (MaxConnectionsFor)
  uint32_t max_request_header_bytes = 8192;
  absl::Duration handshake_timeout = absl::Seconds(10);
  std::string log_level = "info";
};

// Parses argv (Abseil flag syntax, --flagfile= included) on top of PUSHD_<FLAG> environment
// variables; the command line wins over the environment. `env` maps variable names to values.
// Errors name the flag and say what is wrong, in one line.
absl::StatusOr<Config> ParseConfig(const std::vector<std::string>& args,
                                   const std::map<std::string, std::string>& env);

// The process environment as a map, for ParseConfig.
std::map<std::string, std::string> ProcessEnvironment();

// The default of --max_connections: as many WebSockets as `open_files` descriptors allow, after
// room for handshakes in progress (HandshakeRoom) and 256 descriptors for everything else.
uint32_t MaxConnectionsFor(uint64_t open_files);

// Sockets the edge keeps beyond `max_connections` WebSockets for upgrades in progress and plain
// HTTP (probes, scrapes); sockets accepted beyond both are closed at once.
uint32_t HandshakeRoom(uint32_t max_connections);

// One paragraph per flag, for --help.
std::string FlagsHelp();

}  // namespace push
