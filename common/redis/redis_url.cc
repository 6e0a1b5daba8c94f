#include "common/redis/redis_url.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/strings.h"

namespace push::redis {

bool ParsePort(std::string_view text, int* port) {
  return absl::SimpleAtoi(ToAbsl(text), port) && *port > 0 && *port <= 65535;
}

namespace {

// %XX escapes decoded; false on a malformed one.
bool PercentDecode(absl::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    int v = 0;
    if (i + 2 >= in.size() || !absl::ascii_isxdigit(in[i + 1]) ||
        !absl::ascii_isxdigit(in[i + 2])) {
      return false;
    }
    for (char c : in.substr(i + 1, 2)) {
      v = v * 16 + (absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10);
    }
    out->push_back(static_cast<char>(v));
    i += 2;
  }
  return true;
}

}  // namespace

std::vector<std::string> AuthCommand(const Endpoint& endpoint) {
  if (endpoint.password.empty()) return {};
  if (endpoint.user.empty()) return {"AUTH", endpoint.password};
  return {"AUTH", endpoint.user, endpoint.password};
}

absl::StatusOr<Endpoint> ParseUrl(std::string_view url) {
  absl::string_view rest = ToAbsl(url);
  if (!absl::ConsumePrefix(&rest, "redis://")) {
    // Not echoed: the URL may carry a password.
    return absl::InvalidArgumentError(
        "the Redis URL is not redis://[[user]:password@]host:port[/db]");
  }
  Endpoint e;
  if (size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    absl::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = userinfo.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          "the Redis URL's credentials are not [user]:password (write redis://:password@host)");
    }
    if (!PercentDecode(userinfo.substr(0, colon), &e.user) ||
        !PercentDecode(userinfo.substr(colon + 1), &e.password)) {
      return absl::InvalidArgumentError("bad %-escape in the Redis URL's credentials");
    }
    if (e.password.empty()) {
      return absl::InvalidArgumentError("the Redis URL has a user but no password");
    }
  }
  if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    absl::string_view db = rest.substr(slash + 1);
    if (!db.empty() && (!absl::SimpleAtoi(db, &e.db) || e.db < 0 || e.db > 1000)) {
      // No part of the URL is echoed: a password may sit anywhere in a mistyped one.
      return absl::InvalidArgumentError("bad database number in the Redis URL (0 to 1000)");
    }
    rest = rest.substr(0, slash);
  }
  if (size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    if (!ParsePort(ToStd(rest.substr(colon + 1)), &e.port)) {
      return absl::InvalidArgumentError("bad port in the Redis URL (1 to 65535)");
    }
    rest = rest.substr(0, colon);
  }
  if (absl::ConsumePrefix(&rest, "[")) absl::ConsumeSuffix(&rest, "]");
  if (rest.empty()) return absl::InvalidArgumentError("the Redis URL has no host");
  e.host = std::string(rest);
  return e;
}

absl::StatusOr<std::vector<Endpoint>> ParseSeeds(std::string_view seeds) {
  std::vector<Endpoint> out;
  if (absl::StripAsciiWhitespace(ToAbsl(seeds)).empty()) {
    return absl::InvalidArgumentError("no Redis Cluster seed given (host:port[,host:port...])");
  }
  for (absl::string_view entry : absl::StrSplit(ToAbsl(seeds), ',')) {
    absl::string_view seed = absl::StripAsciiWhitespace(entry);
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("Redis Cluster seed '", seed, "' in '", ToAbsl(seeds), "': ", why));
    };
    if (seed.empty()) return bad("empty entry (host:port[,host:port...])");
    if (absl::StrContains(seed, "://")) return bad("write host:port, not a URL");
    size_t colon = seed.rfind(':');
    if (colon == absl::string_view::npos) return bad("no port (write host:port)");
    Endpoint e;
    absl::string_view port = seed.substr(colon + 1);
    if (!ParsePort(ToStd(port), &e.port)) {
      return bad(absl::StrCat("bad port '", port, "'"));
    }
    absl::string_view host = seed.substr(0, colon);
    if (absl::ConsumePrefix(&host, "[")) {
      if (!absl::ConsumeSuffix(&host, "]")) return bad("'[' without ']' around the host");
    } else if (host.find(':') != absl::string_view::npos) {
      return bad("an IPv6 host needs brackets ([::1]:7000)");
    }
    if (host.empty()) return bad("no host");
    if (host.find_first_of(" \t/") != absl::string_view::npos) return bad("bad host");
    e.host = std::string(host);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace push::redis
