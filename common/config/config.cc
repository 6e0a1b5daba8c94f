#include "common/config/config.h"

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
#include "common/auth/jwt.h"
#include "common/auth/tls_credentials.h"
#include "common/redis/redis_url.h"

extern char** environ;

#define PUSHD_DEFINE_FLAG(type, name, default_value, help) \
  ABSL_FLAG(type, name, default_value, help);
PUSHD_FLAGS(PUSHD_DEFINE_FLAG, PUSHD_DEFINE_FLAG)
#undef PUSHD_DEFINE_FLAG

namespace push {
namespace {

#define PUSHD_FLAG_NAME(type, name, default_value, help) #name,
constexpr const char* kFlagNames[] = {PUSHD_FLAGS(PUSHD_FLAG_NAME, PUSHD_FLAG_NAME)};
#undef PUSHD_FLAG_NAME

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

// `echo secret > file` adds a newline that is not part of the secret.
void TrimOneNewline(std::string* s) {
  if (absl::EndsWith(*s, "\r\n")) {
    s->resize(s->size() - 2);
  } else if (absl::EndsWith(*s, "\n")) {
    s->pop_back();
  }
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
    TrimOneNewline(&c.jwt_hs256_secret);
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
  TlsCredentialsCheck check = CheckTlsCredentials(c.tls_cert_pem, c.tls_key_pem);
  switch (check.error) {
    case TlsCredentialsError::kNone:
      return absl::OkStatus();
    case TlsCredentialsError::kCertificate:
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_cert_file='", c.tls_cert_file,
          "': no PEM certificate (-----BEGIN CERTIFICATE-----) in it: ", check.detail));
    case TlsCredentialsError::kKey:
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_key_file='", c.tls_key_file,
          "': no usable PEM private key in it (encrypted keys are not supported): ", check.detail));
    case TlsCredentialsError::kMismatch:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("--tls_key_file='", c.tls_key_file,
                                                 "' is not the key of the certificate in "
                                                 "--tls_cert_file='",
                                                 c.tls_cert_file, "'"));
}

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "pushd";
  return buf;
}

absl::StatusOr<Config> ReadFlags() {
  Config c;
#define PUSHD_COPY_FLAG(type, name, default_value, help) c.name = absl::GetFlag(FLAGS_##name);
#define PUSHD_SKIP_FLAG(type, name, default_value, help)
  PUSHD_FLAGS(PUSHD_COPY_FLAG, PUSHD_SKIP_FLAG)
#undef PUSHD_COPY_FLAG
#undef PUSHD_SKIP_FLAG
  std::string role = absl::GetFlag(FLAGS_role);
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
  if (!c.redis.empty() && !c.redis_cluster.empty()) {
    return absl::InvalidArgumentError(
        "--redis and --redis_cluster are both set; give one (--redis for one Redis server, "
        "--redis_cluster for the seed nodes of a Redis Cluster)");
  }
  const bool shared = !c.redis.empty() || !c.redis_cluster.empty();
  if (c.role != Role::kAll && !shared) {
    return absl::InvalidArgumentError(
        absl::StrCat("--role=", role,
                     " needs --redis or --redis_cluster (the roles share state through Redis)"));
  }
  if (!c.redis.empty()) {
    if (absl::StatusOr<redis::Endpoint> e = redis::ParseUrl(c.redis); !e.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--redis: ", e.status().message()));
    }
  }
  if (!c.redis_cluster.empty()) {
    if (auto seeds = redis::ParseSeeds(c.redis_cluster); !seeds.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--redis_cluster: ", seeds.status().message()));
    }
  }
  if (!c.redis_password_file.empty()) {
    if (!shared) {
      return absl::InvalidArgumentError(
          "--redis_password_file needs --redis or --redis_cluster (the embedded store has no "
          "password)");
    }
    if (absl::Status s =
            ReadKeyFile("redis_password_file", c.redis_password_file, &c.redis_password);
        !s.ok()) {
      return s;
    }
    TrimOneNewline(&c.redis_password);
    if (c.redis_password.empty() || c.redis_password.find('\n') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--redis_password_file: '", c.redis_password_file, "' must hold one line, the password"));
    }
  }
  if (!c.redis_user.empty() && c.redis_password_file.empty()) {
    return absl::InvalidArgumentError(
        "--redis_user needs --redis_password_file (the password of that user)");
  }
  if (c.redis_wait_replicas > 0 && !shared) {
    return absl::InvalidArgumentError(
        "--redis_wait_replicas needs --redis or --redis_cluster (the embedded store has no "
        "replicas)");
  }
  if (c.redis_wait_replicas > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("--redis_wait_replicas=", c.redis_wait_replicas, " is more than 16 replicas"));
  }
  for (auto [flag, d] :
       {std::pair<absl::string_view, absl::Duration>{"ping_interval", c.ping_interval},
        {"pong_timeout", c.pong_timeout},
        {"history_ttl", c.history_ttl},
        {"drain_timeout", c.drain_timeout},
        {"handshake_timeout", c.handshake_timeout},
        {"device_ttl", c.device_ttl},
        {"presence_offline_delay", c.presence_offline_delay},
        {"presence_retention", c.presence_retention}}) {
    if (absl::Status s = CheckPositive(flag, d); !s.ok()) return s;
  }
  if (c.history_size == 0) return absl::InvalidArgumentError("--history_size must be at least 1");
  if (c.max_devices_per_user == 0 || c.max_devices_per_user > 1000) {
    return absl::InvalidArgumentError("--max_devices_per_user must be between 1 and 1000");
  }
  if (c.presence_max_lag < 100 || c.presence_max_lag > 10000000) {
    return absl::InvalidArgumentError("--presence_max_lag must be between 100 and 10000000");
  }
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
