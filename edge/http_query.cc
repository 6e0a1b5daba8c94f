#include "edge/http_query.h"

#include "absl/strings/str_split.h"
#include "common/base/strings.h"

namespace push {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

const std::string* RequestTarget::Param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return &v;
  }
  return nullptr;
}

absl::StatusOr<std::string> PercentDecode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size() || HexValue(in[i + 1]) < 0 || HexValue(in[i + 2]) < 0) {
        return absl::InvalidArgumentError("bad percent-escape in the request target");
      }
      out.push_back(static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<RequestTarget> ParseRequestTarget(std::string_view target) {
  RequestTarget out;
  std::string_view path = target;
  std::string_view query;
  if (size_t q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  if (size_t h = query.find('#'); h != std::string_view::npos) query = query.substr(0, h);
  absl::StatusOr<std::string> decoded_path = PercentDecode(path, false);
  if (!decoded_path.ok()) return decoded_path.status();
  out.path = *std::move(decoded_path);
  for (absl::string_view apair : absl::StrSplit(ToAbsl(query), '&', absl::SkipEmpty())) {
    std::string_view pair = ToStd(apair);
    std::string_view key = pair, value;
    if (size_t eq = pair.find('='); eq != std::string_view::npos) {
      key = pair.substr(0, eq);
      value = pair.substr(eq + 1);
    }
    absl::StatusOr<std::string> k = PercentDecode(key, true);
    if (!k.ok()) return k.status();
    absl::StatusOr<std::string> v = PercentDecode(value, true);
    if (!v.ok()) return v.status();
    out.params.emplace_back(*std::move(k), *std::move(v));
  }
  return out;
}

}  // namespace push
