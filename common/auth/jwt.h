#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"

namespace push {

// The largest token accepted (header, query or refresh frame); real tokens are a few hundred
// bytes, an RS256 signature with a 4096-bit key adds 683.
inline constexpr size_t kMaxJwtBytes = 4096;
// The shortest HS256 secret accepted: RFC 7518 3.2 asks for at least the hash size.
inline constexpr size_t kMinHs256SecretBytes = 32;

struct JwtOptions {
  // Raw secret bytes; empty = HS256 tokens are refused.
  std::string hs256_secret;
  // PEM public key (SubjectPublicKeyInfo or PKCS#1 RSA, at least 2048 bits); empty = RS256
  // tokens are refused.
  std::string rs256_public_key_pem;
  // Slack for clock skew on exp and nbf.
  absl::Duration leeway = absl::Seconds(30);
  const Clock* clock = Clock::Real();
};

struct JwtClaims {
  std::string user_id;    // sub
  absl::Time expires_at;  // exp
  // When the token stops being accepted: exp plus the leeway.
  absl::Time valid_until;
};

// Verifies compact JWS tokens signed with HS256 or RS256 (OpenSSL). The token's `alg` must
// match a configured key (HS256 only with the secret, RS256 only with the public key; `none` and
// every other alg are refused), the signature is checked before the payload is read, `sub` must
// be a valid user id, `exp` is required and `nbf` honoured, both with the leeway. Thread-safe.
class JwtVerifier {
 public:
  // Fails (InvalidArgument) when no key is given or a key is unusable; the message says which.
  static absl::StatusOr<std::unique_ptr<JwtVerifier>> Create(JwtOptions options);
  ~JwtVerifier();

  // Unauthenticated with a short reason ("token expired", "bad token signature", ...) that is
  // safe to show to the client.
  absl::StatusOr<JwtClaims> Verify(std::string_view token) const;

  absl::Duration leeway() const { return options_.leeway; }

 private:
  struct Key;
  explicit JwtVerifier(JwtOptions options);

  JwtOptions options_;
  std::unique_ptr<Key> rs256_key_;
};

// Strict base64url without padding (RFC 7515 section 2): no '=', no whitespace, unused trailing
// bits must be zero so every value has exactly one encoding. Exposed for tests and the fuzzer.
bool Base64UrlDecode(std::string_view in, std::string* out);
std::string Base64UrlEncode(std::string_view in);

}  // namespace push
