#include "common/auth/api_key.h"

#include <openssl/crypto.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace push {

absl::Status ApiKey::Load() {
  std::ifstream in(path_);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read '", path_, "'"));
  std::stringstream content;
  content << in.rdbuf();
  std::string key(absl::StripAsciiWhitespace(content.str()));
  if (key.size() < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path_, "' holds a key of ", key.size(), " bytes; use at least 16"));
  }
  auto shared = std::make_shared<const std::string>(std::move(key));
  absl::MutexLock lock(&mu_);
  key_ = std::move(shared);
  return absl::OkStatus();
}

bool ApiKey::Check(std::string_view authorization) const {
  std::shared_ptr<const std::string> key;
  {
    absl::MutexLock lock(&mu_);
    key = key_;
  }
  constexpr std::string_view kPrefix = "Bearer ";
  if (!key || authorization.size() != kPrefix.size() + key->size() ||
      authorization.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  return CRYPTO_memcmp(authorization.data() + kPrefix.size(), key->data(), key->size()) == 0;
}

}  // namespace push
