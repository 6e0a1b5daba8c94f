#pragma once

// Internal to edge/: includes Beast's HTTP message types. The checks of an HTTP request that need
// no socket, so that tests/fuzz/upgrade_fuzz.cc runs exactly what HttpSession runs.

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "edge/edge_server.h"
#include "edge/http_query.h"

namespace push::edge {

// Limits of one HTTP request on the edge port, upgrade requests included (the header limit is
// --max_request_header_bytes, EdgeOptions::max_request_header_bytes).
inline constexpr size_t kMaxRequestBodyBytes = 4096;
inline constexpr size_t kMaxUserAgentBytes = 256;

using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// Sets the limits on a parser about to read one request.
inline void LimitRequestParser(RequestParser& parser, size_t header_bytes = 8192) {
  parser.header_limit(static_cast<std::uint32_t>(header_bytes));
  parser.body_limit(kMaxRequestBodyBytes);
}

// True for the paths that upgrade to a WebSocket: /ws, and /getPushNews (`compat`: the original
// service's bare-data mode).
inline bool IsUpgradePath(std::string_view path, bool* compat) {
  *compat = path == "/getPushNews";
  return *compat || path == "/ws";
}

// What a valid WebSocket upgrade of /ws or /getPushNews asks for.
struct UpgradeRequest {
  std::string user_id;
  bool ack = false;
  std::optional<uint64_t> since;
  std::string device_id;  // the device_id query parameter (validated); empty = none
  // --auth=jwt: when the token stops being valid.
  absl::Time token_valid_until = absl::InfiniteFuture();
  std::string user_agent;  // UTF-8, at most kMaxUserAgentBytes
};

// Checks an upgrade request of /ws (compat = false) or /getPushNews (compat = true), in the
// order the edge answers: not HTTP/1.1, not a WebSocket upgrade, a malformed handshake (no Host,
// Sec-WebSocket-Version not 13 (FAILED_PRECONDITION: 426), Sec-WebSocket-Key missing or not 16
// bytes of base64, a body), not ready, Origin not allowed, no valid user
// (token or user_id/userId), bad since, ack or device_id. The status code picks the HTTP answer
// (UpgradeRefusalStatus) and its message is the reason sent to the client.
absl::StatusOr<UpgradeRequest> CheckUpgrade(
    const boost::beast::http::request<boost::beast::http::string_body>& req,
    const RequestTarget& target, bool compat, const EdgeOptions& options, bool ready);

// The HTTP status refusing an upgrade that CheckUpgrade refused with `status`.
boost::beast::http::status UpgradeRefusalStatus(const absl::Status& status);

// {"error":"<message>"}
std::string JsonError(std::string_view message);

}  // namespace push::edge
