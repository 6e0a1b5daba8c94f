#include "common/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <limits>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/jwt.h"
#include "common/redis_client.h"
#include "openssl/bio.h"
#include "openssl/err.h"
#include "openssl/evp.h"
#include "openssl/pem.h"
#include "openssl/x509.h"

extern char** environ;

ABSL_FLAG(std::string, grpc_listen, "0.0.0.0:50051", "gRPC address (host:port; port 0 = any)");
ABSL_FLAG(std::string, ws_listen, "0.0.0.0:8080",
          "HTTP/WebSocket address (edge, health, metrics, demo page)");
ABSL_FLAG(std::string, role, "all", "all, api (gRPC only) or edge (WebSocket only)");
ABSL_FLAG(std::string, redis, "", "redis://host:port[/db]; empty = embedded in-memory store");
ABSL_FLAG(std::string, node_id, "",
          "the name this process shows in ListClients (default hostname)");
ABSL_FLAG(absl::Duration, ping_interval, absl::Seconds(20),
          "server ping period on every WebSocket");
ABSL_FLAG(absl::Duration, pong_timeout, absl::Seconds(10),
          "a connection that has not answered a ping by then is closed");
ABSL_FLAG(uint32_t, history_size, 1000, "messages kept per user for replay");
ABSL_FLAG(absl::Duration, history_ttl, absl::Hours(24),
          "how long a message waits for an offline user");
ABSL_FLAG(uint64_t, max_message_bytes, 65536, "largest data accepted by Push");
ABSL_FLAG(uint64_t, max_queued_bytes, 268435456,
          "bytes waiting in all connections' send queues together; past it the connections with "
          "the largest backlogs are closed with 4008 first; 0 = no bound");
ABSL_FLAG(uint64_t, send_queue_bytes, 1048576,
          "per-connection outbound backlog before the connection is a slow consumer");
ABSL_FLAG(uint64_t, max_store_bytes, 512ull << 20,
          "memory bound of the in-memory store; least recently active users are evicted first");
ABSL_FLAG(std::string, auth, "none", "none (user from query) or jwt (user from a signed token)");
ABSL_FLAG(std::string, jwt_hs256_secret_file, "",
          "HS256 secret for --auth=jwt (at least 32 bytes; one trailing newline is ignored)");
ABSL_FLAG(std::string, jwt_rs256_public_key_file, "",
          "RS256 public key (PEM, RSA of at least 2048 bits) for --auth=jwt");
ABSL_FLAG(absl::Duration, jwt_leeway, absl::Seconds(30),
          "clock-skew allowance on a token's exp and nbf");
ABSL_FLAG(std::string, allowed_origins, "",
          "comma list of allowed Origin values; empty = any (development only)");
ABSL_FLAG(std::string, api_key_file, "", "when set, gRPC and admin HTTP calls need the key");
ABSL_FLAG(std::string, tls_cert_file, "",
          "TLS certificate chain (PEM) for both listeners (https/wss and gRPC over TLS)");
ABSL_FLAG(std::string, tls_key_file, "",
          "TLS private key (PEM, unencrypted) for both listeners; set with --tls_cert_file");
ABSL_FLAG(bool, grpc_reflection, true,
          "serve gRPC server reflection (grpcurl, grpc_cli); turn off in production");
ABSL_FLAG(absl::Duration, grpc_default_deadline, absl::Seconds(10),
          "unary gRPC calls without a deadline end with DEADLINE_EXCEEDED after this");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(25),
          "on SIGTERM: stop accepting, close WebSockets with 1001, finish RPCs, exit");
ABSL_FLAG(int32_t, edge_threads, 0, "I/O threads of the WebSocket edge; 0 = number of cores");
ABSL_FLAG(int32_t, grpc_threads, 0,
          "threads serving gRPC calls, each with its own completion queue; 0 = half the cores, "
          "at least 1");
ABSL_FLAG(uint32_t, max_connections_per_user, 32,
          "WebSockets one user may hold open on this process; more get HTTP 429; 0 = no limit");
ABSL_FLAG(uint32_t, max_connections, 0,
          "WebSockets this process holds open; more get HTTP 503; 0 = as many as the open-files "
          "limit allows (logged at start)");
ABSL_FLAG(uint32_t, max_request_header_bytes, 8192,
          "largest request line plus headers on the edge port; larger requests get HTTP 431");
ABSL_FLAG(absl::Duration, handshake_timeout, absl::Seconds(10),
          "time from TCP accept to a complete HTTP request (the upgrade); slower clients are "
          "disconnected");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off");

namespace push {
namespace {

constexpr const char* kFlagNames[] = {
    "grpc_listen",
    "ws_listen",
    "role",
    "redis",
    "node_id",
    "ping_interval",
    "pong_timeout",
    "history_size",
    "history_ttl",
    "max_message_bytes",
    "send_queue_bytes",
    "max_queued_bytes",
    "max_store_bytes",
    "auth",
    "jwt_hs256_secret_file",
    "jwt_rs256_public_key_file",
    "jwt_leeway",
    "allowed_origins",
    "api_key_file",
    "tls_cert_file",
    "tls_key_file",
    "grpc_reflection",
    "grpc_default_deadline",
    "drain_timeout",
    "edge_threads",
    "grpc_threads",
    "max_connections_per_user",
    "max_connections",
    "max_request_header_bytes",
    "handshake_timeout",
    "log_level",
};

// An upgrade with a token and a few cookies fits in 1 KiB; past 1 MiB a request is an attack.
constexpr uint32_t kMinRequestHeaderBytes = 1024;
constexpr uint32_t kMaxRequestHeaderBytes = 1 << 20;
// A handshake that takes minutes is a slowloris, not a slow network.
constexpr absl::Duration kMaxHandshakeTimeout = absl::Minutes(5);
// --max_connections=0: descriptors kept for gRPC, logs and the like.
constexpr uint64_t kSpareFiles = 256;

// Key files are small; a bigger one is a wrong path (a log, a device), not a key.
constexpr size_t kMaxKeyFileBytes = 64 * 1024;

absl::CommandLineFlag* FindOurFlag(absl::string_view name) {
  for (const char* known : kFlagNames) {
    if (name == known) return absl::FindCommandLineFlag(name);
  }
  return nullptr;
}

absl::Status SetFlag(absl::string_view name, absl::string_view value, absl::string_view source) {
  absl::CommandLineFlag* flag = FindOurFlag(name);
  if (flag == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (", source, ")"));
  }
  std::string error;
  if (!flag->ParseFrom(value, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad value '", value, "' for --", name, " (", source, "): ", error));
  }
  return absl::OkStatus();
}

absl::Status ApplyArgs(const std::vector<std::string>& args, int depth);

absl::Status ApplyFlagFile(const std::string& path, int depth) {
  if (depth > 4) return absl::InvalidArgumentError("--flagfile nested too deeply");
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--flagfile: cannot read '", path, "'"));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty() || trimmed[0] == '#') continue;
    lines.emplace_back(trimmed);
  }
  return ApplyArgs(lines, depth + 1);
}

absl::Status ApplyArgs(const std::vector<std::string>& args, int depth) {
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (!absl::ConsumePrefix(&arg, "--") && !absl::ConsumePrefix(&arg, "-")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "': flags look like --name=value"));
    }
    absl::string_view name = arg;
    std::string value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = std::string(arg.substr(eq + 1));
      has_value = true;
    }
    if (name == "flagfile") {
      if (!has_value) {
        if (i + 1 >= args.size()) return absl::InvalidArgumentError("--flagfile needs a path");
        value = args[++i];
      }
      if (absl::Status s = ApplyFlagFile(value, depth); !s.ok()) return s;
      continue;
    }
    if (!has_value) {
      // Boolean flags as Abseil spells them: --name means true, --noname false.
      if (absl::CommandLineFlag* flag = FindOurFlag(name); flag && flag->IsOfType<bool>()) {
        value = "true";
      } else if (absl::string_view positive = name; absl::ConsumePrefix(&positive, "no") &&
                                                    FindOurFlag(positive) != nullptr &&
                                                    FindOurFlag(positive)->IsOfType<bool>()) {
        name = positive;
        value = "false";
      }
      if (!value.empty()) {
        if (absl::Status s = SetFlag(name, value, "command line"); !s.ok()) return s;
        continue;
      }
      if (FindOurFlag(name) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
      }
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
      value = args[++i];
    }
    if (absl::Status s = SetFlag(name, value, "command line"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CheckListen(absl::string_view flag, const std::string& addr) {
  size_t colon = addr.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(addr).substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "='", addr, "' is not host:port (e.g. 0.0.0.0:8080)"));
  }
  return absl::OkStatus();
}

absl::Status CheckPositive(absl::string_view flag, absl::Duration d) {
  if (d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be positive (e.g. 20s)"));
  }
  return absl::OkStatus();
}

absl::Status ReadKeyFile(absl::string_view flag, const std::string& path, std::string* out) {
  // Plain POSIX reads: a directory or an unreadable file is an error to report, not an exception.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  std::string contents;
  bool ok = fd >= 0;
  char buf[4096];
  while (ok) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || contents.size() > kMaxKeyFileBytes) {
      ok = n == 0 && contents.size() <= kMaxKeyFileBytes;
      break;
    }
    contents.append(buf, static_cast<size_t>(n));
  }
  if (fd >= 0) close(fd);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, ": cannot read '", path, "' (a file of at most ", kMaxKeyFileBytes, " bytes)"));
  }
  if (contents.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", path, "' is empty"));
  }
  *out = std::move(contents);
  return absl::OkStatus();
}

// Reads the key files and builds a verifier once, so a bad key stops pushd at start.
absl::Status CheckAuth(Config& c) {
  if (c.auth == "none") {
    for (auto [flag, path] : {std::pair<absl::string_view, const std::string&>{
                                  "jwt_hs256_secret_file", c.jwt_hs256_secret_file},
                              {"jwt_rs256_public_key_file", c.jwt_rs256_public_key_file}}) {
      if (!path.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", flag, " is set but --auth=none: add --auth=jwt to use it"));
      }
    }
    return absl::OkStatus();
  }
  if (c.auth != "jwt") {
    return absl::InvalidArgumentError(absl::StrCat("--auth='", c.auth, "' must be none or jwt"));
  }
  if (c.jwt_hs256_secret_file.empty() && c.jwt_rs256_public_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--auth=jwt needs --jwt_hs256_secret_file or --jwt_rs256_public_key_file");
  }
  if (c.jwt_leeway < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--jwt_leeway must not be negative");
  }
  JwtOptions options;
  options.leeway = c.jwt_leeway;
  if (!c.jwt_hs256_secret_file.empty()) {
    if (absl::Status s =
            ReadKeyFile("jwt_hs256_secret_file", c.jwt_hs256_secret_file, &c.jwt_hs256_secret);
        !s.ok()) {
      return s;
    }
    // `echo secret > file` adds a newline that is not part of the secret.
    if (absl::EndsWith(c.jwt_hs256_secret, "\r\n")) {
      c.jwt_hs256_secret.resize(c.jwt_hs256_secret.size() - 2);
    } else if (absl::EndsWith(c.jwt_hs256_secret, "\n")) {
      c.jwt_hs256_secret.pop_back();
    }
    options.hs256_secret = c.jwt_hs256_secret;
    if (absl::StatusOr<std::unique_ptr<JwtVerifier>> v = JwtVerifier::Create(options); !v.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--jwt_hs256_secret_file='", c.jwt_hs256_secret_file, "': ", v.status().message()));
    }
  }
  if (!c.jwt_rs256_public_key_file.empty()) {
    if (absl::Status s = ReadKeyFile("jwt_rs256_public_key_file", c.jwt_rs256_public_key_file,
                                     &c.jwt_rs256_public_key);
        !s.ok()) {
      return s;
    }
    JwtOptions rs_only;
    rs_only.rs256_public_key_pem = c.jwt_rs256_public_key;
    if (absl::StatusOr<std::unique_ptr<JwtVerifier>> v = JwtVerifier::Create(rs_only); !v.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--jwt_rs256_public_key_file='",
                                                     c.jwt_rs256_public_key_file,
                                                     "': ", v.status().message()));
    }
  }
  return absl::OkStatus();
}

// OpenSSL's reason for the last failure, for error messages; clears its error queue.
std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

// An encrypted key would make OpenSSL prompt on the terminal: refuse it instead.
int NoPassword(char*, int, int, void*) { return -1; }

// Both files or neither; each must hold PEM that OpenSSL accepts, and the key must belong to the
// certificate, so a wrong file stops pushd at start instead of failing every handshake.
absl::Status CheckTls(Config& c) {
  if (c.tls_cert_file.empty() && c.tls_key_file.empty()) return absl::OkStatus();
  if (c.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_key_file is missing: --tls_cert_file needs its private key (set both or neither)");
  }
  if (c.tls_cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert_file is missing: --tls_key_file needs its certificate (set both or neither)");
  }
  if (absl::Status s = ReadKeyFile("tls_cert_file", c.tls_cert_file, &c.tls_cert_pem); !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadKeyFile("tls_key_file", c.tls_key_file, &c.tls_key_pem); !s.ok()) {
    return s;
  }
  ERR_clear_error();
  BIO* cert_bio = BIO_new_mem_buf(c.tls_cert_pem.data(), static_cast<int>(c.tls_cert_pem.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, NoPassword, nullptr);
  BIO_free(cert_bio);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_cert_file='", c.tls_cert_file,
        "': no PEM certificate (-----BEGIN CERTIFICATE-----) in it: ", OpenSslError()));
  }
  BIO* key_bio = BIO_new_mem_buf(c.tls_key_pem.data(), static_cast<int>(c.tls_key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, NoPassword, nullptr);
  BIO_free(key_bio);
  absl::Status status;
  if (key == nullptr) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "--tls_key_file='", c.tls_key_file,
        "': no usable PEM private key in it (encrypted keys are not supported): ", OpenSslError()));
  } else if (X509_check_private_key(cert, key) != 1) {
    ERR_clear_error();
    status = absl::InvalidArgumentError(absl::StrCat("--tls_key_file='", c.tls_key_file,
                                                     "' is not the key of the certificate in "
                                                     "--tls_cert_file='",
                                                     c.tls_cert_file, "'"));
  }
  EVP_PKEY_free(key);
  X509_free(cert);
  return status;
}

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "pushd";
  return buf;
}

absl::StatusOr<Config> ReadFlags() {
  Config c;
  c.grpc_listen = absl::GetFlag(FLAGS_grpc_listen);
  c.ws_listen = absl::GetFlag(FLAGS_ws_listen);
  std::string role = absl::GetFlag(FLAGS_role);
  c.redis = absl::GetFlag(FLAGS_redis);
  c.node_id = absl::GetFlag(FLAGS_node_id);
  c.ping_interval = absl::GetFlag(FLAGS_ping_interval);
  c.pong_timeout = absl::GetFlag(FLAGS_pong_timeout);
  c.history_size = absl::GetFlag(FLAGS_history_size);
  c.history_ttl = absl::GetFlag(FLAGS_history_ttl);
  c.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  c.send_queue_bytes = absl::GetFlag(FLAGS_send_queue_bytes);
  c.max_queued_bytes = absl::GetFlag(FLAGS_max_queued_bytes);
  c.max_store_bytes = absl::GetFlag(FLAGS_max_store_bytes);
  c.auth = absl::GetFlag(FLAGS_auth);
  c.jwt_hs256_secret_file = absl::GetFlag(FLAGS_jwt_hs256_secret_file);
  c.jwt_rs256_public_key_file = absl::GetFlag(FLAGS_jwt_rs256_public_key_file);
  c.jwt_leeway = absl::GetFlag(FLAGS_jwt_leeway);
  c.api_key_file = absl::GetFlag(FLAGS_api_key_file);
  c.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  c.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  c.grpc_reflection = absl::GetFlag(FLAGS_grpc_reflection);
  c.grpc_default_deadline = absl::GetFlag(FLAGS_grpc_default_deadline);
  c.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  c.edge_threads = absl::GetFlag(FLAGS_edge_threads);
  c.grpc_threads = absl::GetFlag(FLAGS_grpc_threads);
  c.max_connections_per_user = absl::GetFlag(FLAGS_max_connections_per_user);
  c.max_connections = absl::GetFlag(FLAGS_max_connections);
  c.max_request_header_bytes = absl::GetFlag(FLAGS_max_request_header_bytes);
  c.handshake_timeout = absl::GetFlag(FLAGS_handshake_timeout);
  c.log_level = absl::GetFlag(FLAGS_log_level);
  for (absl::string_view origin :
       absl::StrSplit(absl::GetFlag(FLAGS_allowed_origins), ',', absl::SkipWhitespace())) {
    c.allowed_origins.emplace_back(absl::StripAsciiWhitespace(origin));
  }

  if (absl::Status s = CheckListen("grpc_listen", c.grpc_listen); !s.ok()) return s;
  if (absl::Status s = CheckListen("ws_listen", c.ws_listen); !s.ok()) return s;
  if (role == "all") {
    c.role = Role::kAll;
  } else if (role == "api") {
    c.role = Role::kApi;
  } else if (role == "edge") {
    c.role = Role::kEdge;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--role='", role, "' must be one of all, api, edge"));
  }
  if (c.role != Role::kAll && c.redis.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--role=", role, " needs --redis (the roles share state through Redis)"));
  }
  if (!c.redis.empty()) {
    if (absl::StatusOr<redis::Endpoint> e = redis::ParseUrl(c.redis); !e.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--redis: ", e.status().message()));
    }
  }
  for (auto [flag, d] :
       {std::pair<absl::string_view, absl::Duration>{"ping_interval", c.ping_interval},
        {"pong_timeout", c.pong_timeout},
        {"history_ttl", c.history_ttl},
        {"drain_timeout", c.drain_timeout},
        {"handshake_timeout", c.handshake_timeout}}) {
    if (absl::Status s = CheckPositive(flag, d); !s.ok()) return s;
  }
  if (c.history_size == 0) return absl::InvalidArgumentError("--history_size must be at least 1");
  if (c.max_message_bytes == 0 || c.max_message_bytes > (64u << 20)) {
    return absl::InvalidArgumentError("--max_message_bytes must be between 1 and 67108864");
  }
  if (c.send_queue_bytes < 1024) {
    return absl::InvalidArgumentError("--send_queue_bytes must be at least 1024");
  }
  if (c.max_queued_bytes != 0 && c.max_queued_bytes < c.send_queue_bytes) {
    return absl::InvalidArgumentError(
        "--max_queued_bytes must be 0 (no bound) or at least --send_queue_bytes");
  }
  if (c.max_store_bytes < (1u << 20)) {
    return absl::InvalidArgumentError("--max_store_bytes must be at least 1048576");
  }
  if (absl::Status s = CheckAuth(c); !s.ok()) return s;
  if (absl::Status s = CheckTls(c); !s.ok()) return s;
  if (absl::Status s = CheckPositive("grpc_default_deadline", c.grpc_default_deadline); !s.ok()) {
    return s;
  }
  if (c.edge_threads < 0 || c.edge_threads > 256) {
    return absl::InvalidArgumentError("--edge_threads must be between 0 and 256");
  }
  if (c.grpc_threads < 0 || c.grpc_threads > 256) {
    return absl::InvalidArgumentError("--grpc_threads must be between 0 and 256");
  }
  if (c.max_request_header_bytes < kMinRequestHeaderBytes ||
      c.max_request_header_bytes > kMaxRequestHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("--max_request_header_bytes must be between ",
                                                   kMinRequestHeaderBytes, " and ",
                                                   kMaxRequestHeaderBytes));
  }
  if (c.handshake_timeout > kMaxHandshakeTimeout) {
    return absl::InvalidArgumentError(absl::StrCat("--handshake_timeout must be at most ",
                                                   absl::FormatDuration(kMaxHandshakeTimeout)));
  }
  static constexpr const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "off"};
  if (std::find(std::begin(kLevels), std::end(kLevels), c.log_level) == std::end(kLevels)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--log_level='", c.log_level, "' must be one of trace, debug, info, warn, error, off"));
  }
  if (c.node_id.empty()) c.node_id = Hostname();
  return c;
}

}  // namespace

absl::StatusOr<Config> ParseConfig(const std::vector<std::string>& args,
                                   const std::map<std::string, std::string>& env) {
  // Start from defaults each time so the function is pure with respect to its inputs.
  for (const char* name : kFlagNames) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string error;
    flag->ParseFrom(flag->DefaultValue(), &error);
  }
  for (const char* name : kFlagNames) {
    std::string var = absl::StrCat("PUSHD_", absl::AsciiStrToUpper(name));
    if (auto it = env.find(var); it != env.end()) {
      if (absl::Status s = SetFlag(name, it->second, absl::StrCat("from $", var)); !s.ok()) {
        return s;
      }
    }
  }
  if (auto it = env.find("PUSHD_FLAGFILE"); it != env.end()) {
    if (absl::Status s = ApplyFlagFile(it->second, 0); !s.ok()) return s;
  }
  if (absl::Status s = ApplyArgs(args, 0); !s.ok()) return s;
  return ReadFlags();
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view kv = *e;
    if (!absl::StartsWith(kv, "PUSHD_")) continue;
    size_t eq = kv.find('=');
    if (eq == absl::string_view::npos) continue;
    env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

uint32_t HandshakeRoom(uint32_t max_connections) { return 64 + max_connections / 16; }

uint32_t MaxConnectionsFor(uint64_t open_files) {
  // Solves m + HandshakeRoom(m) <= open_files - kSpareFiles for the largest m.
  constexpr uint64_t kFixed = kSpareFiles + 64;
  if (open_files < kFixed + 68) return static_cast<uint32_t>(std::max<uint64_t>(1, open_files / 4));
  uint64_t m = (open_files - kFixed) * 16 / 17;
  return static_cast<uint32_t>(std::min<uint64_t>(m, std::numeric_limits<uint32_t>::max() / 2));
}

std::string FlagsHelp() {
  std::string out =
      "usage: pushd [--flag=value ...] [--flagfile=FILE]\n"
      "Every flag can also be set as PUSHD_<FLAG_NAME_UPPERCASE> in the environment.\n\n";
  for (const char* name : kFlagNames) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    absl::StrAppend(&out, "  --", name, " (default '", flag->DefaultValue(), "')\n      ",
                    flag->Help(), "\n");
  }
  return out;
}

}  // namespace push
