#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace push {

enum class Role { kAll, kApi, kEdge };

// Every flag of pushd, written once: type, name, default, help. F: the Config field of the same
// name, type and default holds its value. D: the value is turned into another field (role into
// Role, allowed_origins into a list) by ParseConfig. The Abseil flags, the list of flags pushd
// accepts (unknown ones are errors), the copy into Config and --help all come from this table.
#define PUSHD_FLAGS(F, D)                                                                         \
  F(std::string, grpc_listen, "0.0.0.0:50051", "gRPC address (host:port; port 0 = any)")          \
  F(std::string, ws_listen, "0.0.0.0:8080",                                                       \
    "HTTP/WebSocket address (edge, health, metrics, demo page)")                                  \
  D(std::string, role, "all", "all, api (gRPC only) or edge (WebSocket only)")                    \
  F(std::string, redis, "",                                                                       \
    "redis://[[user]:password@]host:port[/db]; empty = embedded in-memory store")                 \
  F(std::string, redis_cluster, "",                                                               \
    "host:port[,host:port...]: seed nodes of a Redis 7 Cluster, instead of --redis")              \
  F(std::string, redis_password_file, "",                                                         \
    "file holding the Redis password: AUTH on every Redis connection (--redis, --redis_cluster)") \
  F(std::string, redis_user, "", "the Redis ACL user for --redis_password_file (default: none)")  \
  F(uint32_t, redis_wait_replicas, 0,                                                             \
    "with --redis or --redis_cluster: a Push is answered only after this many replicas hold it")  \
  F(std::string, node_id, "", "the name this process shows in ListClients (default hostname)")    \
  F(absl::Duration, ping_interval, absl::Seconds(20), "server ping period on every WebSocket")    \
  F(absl::Duration, pong_timeout, absl::Seconds(10),                                              \
    "a connection that has not answered a ping by then is closed")                                \
  F(uint32_t, history_size, 1000, "messages kept per user for replay")                            \
  F(absl::Duration, history_ttl, absl::Hours(24), "how long a message waits for an offline user") \
  F(uint64_t, max_message_bytes, 65536, "largest data accepted by Push")                          \
  F(uint64_t, send_queue_bytes, 1048576,                                                          \
    "per-connection outbound backlog before the connection is a slow consumer")                   \
  F(uint64_t, max_queued_bytes, 268435456,                                                        \
    "bytes waiting in all connections' send queues together; past it the connections with"        \
    " the largest backlogs are closed with 4008 first; 0 = no bound")                             \
  F(uint64_t, max_store_bytes, 512ull << 20,                                                      \
    "memory bound of the in-memory store; least recently active users are evicted first")         \
  F(std::string, auth, "none", "none (user from query) or jwt (user from a signed token)")        \
  F(std::string, jwt_hs256_secret_file, "",                                                       \
    "HS256 secret for --auth=jwt (at least 32 bytes; one trailing newline is ignored)")           \
  F(std::string, jwt_rs256_public_key_file, "",                                                   \
    "RS256 public key (PEM, RSA of at least 2048 bits) for --auth=jwt")                           \
  F(absl::Duration, jwt_leeway, absl::Seconds(30),                                                \
    "clock-skew allowance on a token's exp and nbf")                                              \
  D(std::string, allowed_origins, "",                                                             \
    "comma list of allowed Origin values; empty = any (development only)")                        \
  F(std::string, api_key_file, "", "when set, gRPC and admin HTTP calls need the key")            \
  F(std::string, tls_cert_file, "",                                                               \
    "TLS certificate chain (PEM) for both listeners (https/wss and gRPC over TLS)")               \
  F(std::string, tls_key_file, "",                                                                \
    "TLS private key (PEM, unencrypted) for both listeners; set with --tls_cert_file")            \
  F(bool, grpc_reflection, true,                                                                  \
    "serve gRPC server reflection (grpcurl, grpc_cli); turn off in production")                   \
  F(absl::Duration, grpc_default_deadline, absl::Seconds(10),                                     \
    "unary gRPC calls without a deadline end with DEADLINE_EXCEEDED after this")                  \
  F(absl::Duration, drain_timeout, absl::Seconds(25),                                             \
    "on SIGTERM: stop accepting, close WebSockets with 1001, finish RPCs, exit")                  \
  F(int32_t, edge_threads, 0, "I/O threads of the WebSocket edge; 0 = number of cores")           \
  F(int32_t, grpc_threads, 0,                                                                     \
    "threads serving gRPC calls, each with its own completion queue; 0 = half the cores, "        \
    "at least 1")                                                                                 \
  F(uint32_t, max_connections_per_user, 32,                                                       \
    "WebSockets one user may hold open on this process; more get HTTP 429; 0 = no limit")         \
  F(uint32_t, max_connections, 0,                                                                 \
    "WebSockets this process holds open; more get HTTP 503; 0 = as many as the open-files"        \
    " limit allows (logged at start)")                                                            \
  F(uint32_t, max_request_header_bytes, 8192,                                                     \
    "largest request line plus headers on the edge port; larger requests get HTTP 431")           \
  F(absl::Duration, handshake_timeout, absl::Seconds(10),                                         \
    "time from TCP accept to a complete HTTP request (the upgrade); slower clients are "          \
    "disconnected")                                                                               \
  F(absl::Duration, device_ttl, absl::Hours(720),                                                 \
    "how long a device's delivered cursor is kept after its last connection ends")                \
  F(uint32_t, max_devices_per_user, 32,                                                           \
    "device cursors kept per user; the least recently active is dropped first")                   \
  F(absl::Duration, presence_offline_delay, absl::Seconds(5),                                     \
    "a user with no connection anywhere for this long is OFFLINE (a page reload is neither)")     \
  F(absl::Duration, presence_retention, absl::Hours(1),                                           \
    "how long presence events are kept for watchers resuming with after")                         \
  F(uint32_t, presence_max_lag, 10000,                                                            \
    "a WatchPresence stream more than this many events behind the newest is ended with "          \
    "RESOURCE_EXHAUSTED (it resumes with after)")                                                 \
  F(std::string, log_level, "info", "trace, debug, info, warn, error or off")

// Everything the process is configured with, read once at start from flags/environment.
struct Config {
#define PUSHD_CONFIG_FIELD(type, name, default_value, help) type name = default_value;
#define PUSHD_NO_CONFIG_FIELD(type, name, default_value, help)
  PUSHD_FLAGS(PUSHD_CONFIG_FIELD, PUSHD_NO_CONFIG_FIELD)
#undef PUSHD_CONFIG_FIELD
#undef PUSHD_NO_CONFIG_FIELD

  // From the D flags.
  Role role = Role::kAll;
  std::vector<std::string> allowed_origins;
  // Read (and checked) at start: with --auth=jwt the key files' contents, with TLS the PEM files'.
  std::string jwt_hs256_secret;
  std::string jwt_rs256_public_key;
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // --redis_password_file's contents (one trailing newline dropped).
  std::string redis_password;
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
