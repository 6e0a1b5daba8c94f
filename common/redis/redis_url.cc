#include "common/redis/redis_url.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/strings.h"

namespace push::redis {

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
    if (!absl::SimpleAtoi(rest.substr(colon + 1), &e.port) || e.port <= 0 || e.port > 65535) {
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

}  // namespace push::redis
