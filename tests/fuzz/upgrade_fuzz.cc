// libFuzzer target for what the edge does with the bytes of an HTTP request before any socket
// code: Beast's request parser with the edge's limits (LimitRequestParser), ParseRequestTarget,
// the upgrade routes (IsUpgradePath) and CheckUpgrade under four configurations (--auth=none or
// jwt, with or without --allowed_origins). The input is the raw request. Aborts when:
//   - parsing the input in one piece and in three pieces (as TCP may deliver it) gives two
//     different requests, or a request only one way;
//   - a parsed target, percent-encoded again, does not parse to the same path and parameters;
//   - CheckUpgrade accepts something it must refuse (not GET + Upgrade: websocket, not ready, a
//     disallowed Origin, an invalid user, a user other than the query's or the token's, a bad
//     since or ack) or hands on a user agent that is too long or not UTF-8 (it is shown in
//     ListClients, a protobuf string field), or that differs from a UTF-8 header beyond the cut;
//   - a refusal would have a status other than 400/401/403/503 or a body that is not JSON.

#include <boost/asio/buffer.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/json/parse.hpp>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "common/auth/jwt.h"
#include "common/base/ids.h"
#include "common/json/json.h"
#include "edge/upgrade_request.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using Request = http::request<http::string_body>;

constexpr char kSecret[] = "upgrade-fuzz-secret-0123456789abcdef0123";
constexpr char kAllowedOrigin[] = "https://app.example";

class FixedClock final : public push::Clock {
 public:
  absl::Time Now() const override { return absl::FromUnixSeconds(1'700'000'000); }
};

// One configuration of the edge: [jwt][origins].
const push::edge::EdgeOptions& Options(bool jwt, bool origins) {
  static const auto* all = [] {
    static FixedClock clock;
    push::JwtOptions jwt_options;
    jwt_options.hs256_secret = kSecret;
    jwt_options.clock = &clock;
    auto verifier = push::JwtVerifier::Create(jwt_options);
    if (!verifier.ok()) std::abort();
    std::shared_ptr<const push::JwtVerifier> shared = *std::move(verifier);
    auto* options = new push::edge::EdgeOptions[4];
    for (int i = 0; i < 4; ++i) {
      if (i & 1) options[i].jwt = shared;
      if (i & 2) options[i].allowed_origins = {kAllowedOrigin, "http://localhost:8080"};
    }
    return options;
  }();
  return all[(jwt ? 1 : 0) | (origins ? 2 : 0)];
}

struct Parsed {
  beast::error_code ec;
  std::optional<Request> request;
};

// Feeds `input` to a parser the way http::async_read does, in pieces that end at `cuts`, then
// end of stream (the peer closed) if the request is still incomplete.
Parsed Parse(std::string_view input, size_t cut1, size_t cut2) {
  push::edge::RequestParser parser;
  push::edge::LimitRequestParser(parser);
  const size_t ends[] = {cut1, cut2, input.size()};
  std::string pending;
  size_t fed = 0, next = 0;
  Parsed out;
  // Each turn consumes bytes, adds a piece or ends: more turns than that means a parser that
  // stopped making progress, which would spin the edge too.
  for (size_t turns = 0; !parser.is_done(); ++turns) {
    if (turns > input.size() + 16) std::abort();
    if (!pending.empty()) {
      size_t used = parser.put(boost::asio::buffer(pending), out.ec);
      pending.erase(0, used);
      if (out.ec == http::error::need_more) {
        out.ec = {};
      } else if (out.ec) {
        return out;
      } else if (used > 0) {
        continue;
      }
    }
    if (next < 3) {
      pending.append(input.substr(fed, ends[next] - fed));
      fed = ends[next++];
      continue;
    }
    parser.put_eof(out.ec);
    if (out.ec) return out;
    if (!parser.is_done()) std::abort();
  }
  out.request = parser.release();
  return out;
}

bool SameRequest(const Request& a, const Request& b) {
  if (a.method_string() != b.method_string() || a.target() != b.target() ||
      a.version() != b.version() || a.body() != b.body()) {
    return false;
  }
  auto i = a.begin(), j = b.begin();
  for (; i != a.end() && j != b.end(); ++i, ++j) {
    if (i->name_string() != j->name_string() || i->value() != j->value()) return false;
  }
  return i == a.end() && j == b.end();
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

void CheckTargetRoundTrip(const push::RequestTarget& target) {
  std::string again = PercentEncode(target.path);
  for (size_t i = 0; i < target.params.size(); ++i) {
    again += i == 0 ? "?" : "&";
    again += PercentEncode(target.params[i].first) + "=" + PercentEncode(target.params[i].second);
  }
  absl::StatusOr<push::RequestTarget> back = push::ParseRequestTarget(again);
  if (!back.ok() || back->path != target.path || back->params != target.params) std::abort();
}

void CheckRefusalBody(std::string_view message) {
  if (message.empty() || !push::ValidateJson(push::edge::JsonError(message)).ok()) std::abort();
}

void CheckUpgradeUnder(const Request& req, const push::RequestTarget& target, bool compat, bool jwt,
                       bool origins, bool ready) {
  absl::StatusOr<push::edge::UpgradeRequest> up =
      push::edge::CheckUpgrade(req, target, compat, Options(jwt, origins), ready);
  if (!up.ok()) {
    http::status status = push::edge::UpgradeRefusalStatus(up.status());
    if (status != http::status::bad_request && status != http::status::unauthorized &&
        status != http::status::forbidden && status != http::status::service_unavailable &&
        status != http::status::upgrade_required) {
      std::abort();
    }
    CheckRefusalBody(std::string_view(up.status().message().data(), up.status().message().size()));
    return;
  }
  if (!ready || req.method() != http::verb::get || !beast::websocket::is_upgrade(req)) {
    std::abort();
  }
  // What Beast's accept would refuse in plain text is refused before it, with a JSON body.
  auto version = req.find(http::field::sec_websocket_version);
  auto key = req.find(http::field::sec_websocket_key);
  if (req.version() < 11 || req.find(http::field::host) == req.end() || version == req.end() ||
      version->value() != "13" || key == req.end() || key->value().size() != 24) {
    std::abort();
  }
  if (origins) {
    auto origin = req.find(http::field::origin);
    if (origin != req.end() && origin->value() != kAllowedOrigin &&
        origin->value() != "http://localhost:8080") {
      std::abort();
    }
  }
  if (!push::ValidateUserId(up->user_id).ok()) std::abort();
  if (jwt) {
    // Only a token verified with the secret names the user (the fuzzer cannot forge one).
    if (up->token_valid_until == absl::InfiniteFuture()) std::abort();
  } else {
    const std::string* user = target.Param(compat ? "userId" : "user_id");
    if (user == nullptr || *user != up->user_id) std::abort();
  }
  if (const std::string* since = target.Param("since")) {
    uint64_t value;
    if (!absl::SimpleAtoi(*since, &value) || up->since != value) std::abort();
  } else if (up->since.has_value()) {
    std::abort();
  }
  const std::string* ack = target.Param("ack");
  if (up->ack != (ack != nullptr && (*ack == "1" || *ack == "true"))) std::abort();
  auto ua = req.find(http::field::user_agent);
  std::string_view header;
  if (ua != req.end()) header = ua->value();
  if (up->user_agent.size() > push::edge::kMaxUserAgentBytes ||
      !push::IsValidUtf8(up->user_agent)) {
    std::abort();
  }
  // A UTF-8 header is kept as it is, only cut (between characters) at the limit.
  if (push::IsValidUtf8(header) &&
      (header.substr(0, up->user_agent.size()) != up->user_agent ||
       (up->user_agent.size() < header.size() &&
        up->user_agent.size() + 4 <= push::edge::kMaxUserAgentBytes))) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  Parsed whole = Parse(input, size, size);
  Parsed pieces = Parse(input, size / 3, 2 * size / 3);
  // A request parses the same however it is cut. A malformed one may fail differently (Beast
  // finds a bare-LF header bad in one piece but waits for more when cut: the edge's header
  // limit and read timeout bound that wait), but it never becomes a request.
  if (whole.request.has_value() != pieces.request.has_value()) std::abort();
  if (whole.ec) {
    // The edge answers with this body (HttpSession::OnRead).
    CheckRefusalBody("malformed HTTP request: " + whole.ec.message());
    return 0;
  }
  if (!SameRequest(*whole.request, *pieces.request)) std::abort();
  const Request& req = *whole.request;
  absl::StatusOr<push::RequestTarget> target = push::ParseRequestTarget(req.target());
  if (!target.ok()) {
    CheckRefusalBody(
        std::string_view(target.status().message().data(), target.status().message().size()));
    return 0;
  }
  CheckTargetRoundTrip(*target);
  bool compat;
  if (!push::edge::IsUpgradePath(target->path, &compat)) return 0;
  for (int config = 0; config < 8; ++config) {
    CheckUpgradeUnder(req, *target, compat, config & 1, config & 2, !(config & 4));
  }
  return 0;
}
