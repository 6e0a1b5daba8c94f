#include "edge/upgrade_request.h"

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "absl/strings/numbers.h"
#include "common/base/http_status.h"
#include "common/base/ids.h"
#include "common/base/strings.h"
#include "common/json/json.h"

namespace push::edge {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;

// The token of an upgrade: `Authorization: Bearer <t>` when that header is present, else the
// `token` query parameter (browsers cannot set headers on a WebSocket).
absl::StatusOr<std::string> BearerToken(const http::request<http::string_body>& req,
                                        const RequestTarget& target) {
  if (auto auth = req.find(http::field::authorization); auth != req.end()) {
    std::string_view value = auth->value();
    constexpr std::string_view kScheme = "bearer ";
    if (value.size() <= kScheme.size() ||
        !beast::iequals(value.substr(0, kScheme.size()), kScheme)) {
      return absl::UnauthenticatedError("Authorization must be: Bearer <token>");
    }
    value.remove_prefix(kScheme.size());
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    return std::string(value);
  }
  if (const std::string* token = target.Param("token")) return *token;
  return absl::UnauthenticatedError("missing token");
}

// The User-Agent as ListClients shows it, in a protobuf string that must be UTF-8 (HTTP allows
// any byte above 0x7F in a header): at most kMaxUserAgentBytes, each byte that does not start a
// well-formed UTF-8 sequence replaced by '?', and no character cut in two at the limit.
std::string DisplayUserAgent(std::string_view header) {
  std::string out;
  size_t i = 0;
  while (i < header.size()) {
    auto lead = static_cast<unsigned char>(header[i]);
    size_t n = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    std::string_view sequence = header.substr(i, n);
    if (sequence.size() != n || !IsValidUtf8(sequence)) {
      sequence = "?";
      n = 1;
    }
    if (out.size() + sequence.size() > kMaxUserAgentBytes) break;
    out.append(sequence);
    i += n;
  }
  return out;
}

// A Sec-WebSocket-Key is 16 bytes in base64 (RFC 6455 4.1): 22 characters of the base64 alphabet
// then "==".
bool IsWebSocketKey(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.begin() + 22, [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
  });
}

// The handshake checks of RFC 6455 4.2.1 that Beast would otherwise make itself, answering in
// plain text: made here, every refusal has pushd's JSON body.
absl::Status CheckHandshake(const http::request<http::string_body>& req) {
  if (req.find(http::field::host) == req.end()) {
    return absl::InvalidArgumentError("missing Host header");
  }
  auto version = req.find(http::field::sec_websocket_version);
  if (version == req.end() || version->value() != "13") {
    return absl::FailedPreconditionError(
        "unsupported WebSocket version: send Sec-WebSocket-Version: 13");
  }
  auto key = req.find(http::field::sec_websocket_key);
  if (key == req.end()) return absl::InvalidArgumentError("missing Sec-WebSocket-Key header");
  if (!IsWebSocketKey(key->value())) {
    return absl::InvalidArgumentError(
        "Sec-WebSocket-Key must be 16 bytes in base64 (24 characters)");
  }
  // Bytes after the request would be the first WebSocket frames: a body has no place there.
  if (!req.body().empty() || req.chunked()) {
    return absl::InvalidArgumentError("a WebSocket upgrade request has no body");
  }
  return absl::OkStatus();
}

}  // namespace

std::string JsonError(std::string_view message) {
  std::string out = R"({"error":)";
  AppendJsonString(&out, message);
  out.push_back('}');
  return out;
}

http::status UpgradeRefusalStatus(const absl::Status& status) {
  // The one refusal HTTP has its own status for: a WebSocket version other than ours.
  if (status.code() == absl::StatusCode::kFailedPrecondition) {
    return http::status::upgrade_required;
  }
  return static_cast<http::status>(HttpStatusOf(status));
}

absl::StatusOr<UpgradeRequest> CheckUpgrade(const http::request<http::string_body>& req,
                                            const RequestTarget& target, bool compat,
                                            const EdgeOptions& options, bool ready) {
  if (req.version() < 11) return absl::InvalidArgumentError("a WebSocket upgrade needs HTTP/1.1");
  if (req.method() != http::verb::get || !beast::websocket::is_upgrade(req)) {
    return absl::InvalidArgumentError(
        "expected a WebSocket upgrade (GET with Connection: Upgrade, Upgrade: websocket)");
  }
  if (absl::Status s = CheckHandshake(req); !s.ok()) return s;
  if (!ready) return absl::UnavailableError("server is not accepting connections");
  if (!options.allowed_origins.empty()) {
    auto origin = req.find(http::field::origin);
    if (origin != req.end()) {
      const auto& allowed = options.allowed_origins;
      if (std::find(allowed.begin(), allowed.end(), origin->value()) == allowed.end()) {
        return absl::PermissionDeniedError("origin not allowed");
      }
    }
  }
  UpgradeRequest out;
  if (const JwtVerifier* jwt = options.jwt.get()) {
    // The token is the only source of the user: a user_id/userId in the query is ignored, so
    // it can never name someone else.
    absl::StatusOr<std::string> token = BearerToken(req, target);
    absl::StatusOr<JwtClaims> claims =
        token.ok() ? jwt->Verify(*token) : absl::StatusOr<JwtClaims>(token.status());
    if (!claims.ok()) return absl::UnauthenticatedError(claims.status().message());
    out.user_id = std::move(claims->user_id);
    out.token_valid_until = claims->valid_until;
  } else {
    const std::string* param = target.Param(compat ? "userId" : "user_id");
    if (param == nullptr) {
      return absl::InvalidArgumentError(compat ? "missing userId query parameter"
                                               : "missing user_id query parameter");
    }
    if (absl::Status s = ValidateUserId(*param); !s.ok()) {
      return absl::InvalidArgumentError(s.message());
    }
    out.user_id = *param;
  }
  if (const std::string* since = target.Param("since")) {
    uint64_t value = 0;
    if (!absl::SimpleAtoi(*since, &value)) {
      return absl::InvalidArgumentError("since must be a non-negative integer (a seq)");
    }
    out.since = value;
  }
  if (const std::string* ack = target.Param("ack")) {
    if (*ack == "1" || *ack == "true") {
      out.ack = true;
    } else if (!(*ack == "0" || *ack == "false" || ack->empty())) {
      return absl::InvalidArgumentError("ack must be 1 or 0");
    }
  }
  if (const std::string* device = target.Param("device_id")) {
    if (absl::Status s = ValidateDeviceId(*device); !s.ok()) {
      return absl::InvalidArgumentError(s.message());
    }
    out.device_id = *device;
  }
  if (auto ua = req.find(http::field::user_agent); ua != req.end()) {
    out.user_agent = DisplayUserAgent(ua->value());
  }
  return out;
}

}  // namespace push::edge
