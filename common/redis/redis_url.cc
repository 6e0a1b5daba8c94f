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

absl::StatusOr<Endpoint> ParseUrl(std::string_view url) {
  absl::string_view rest = ToAbsl(url);
  if (!absl::ConsumePrefix(&rest, "redis://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", ToAbsl(url), "' is not redis://host:port[/db]"));
  }
  Endpoint e;
  if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    absl::string_view db = rest.substr(slash + 1);
    if (!db.empty() && (!absl::SimpleAtoi(db, &e.db) || e.db < 0 || e.db > 1000)) {
      return absl::InvalidArgumentError(absl::StrCat("bad database number '", db, "'"));
    }
    rest = rest.substr(0, slash);
  }
  if (size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    if (!ParsePort(ToStd(rest.substr(colon + 1)), &e.port)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad port '", rest.substr(colon + 1), "' in the Redis URL"));
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
