#pragma once

// Signing JSON Web Tokens the way an identity provider would, for tests of pushd's JwtVerifier:
// HS256 with a shared secret, RS256 with a private key made at run time. Plain OpenSSL and
// common/auth/jwt.h's base64url, no GTest, so the fuzz targets can use it too.

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace push::testing {

inline constexpr char kHs256Header[] = R"({"alg":"HS256","typ":"JWT"})";
inline constexpr char kRs256Header[] = R"({"alg":"RS256","typ":"JWT"})";

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// `key`'s public half as PEM (SubjectPublicKeyInfo), as --jwt_rs256_public_key_file holds it.
std::string PublicKeyPem(EVP_PKEY* key);

// The raw signatures of `input`: HMAC-SHA256 with `key`, RSASSA-PKCS1-v1_5 SHA-256 with `key`.
std::string Hs256Mac(std::string_view key, std::string_view input);
std::string Rs256Signature(EVP_PKEY* key, std::string_view input);

// base64url(header) "." base64url(payload): what a token's signature covers.
std::string JwtSigningInput(std::string_view header, std::string_view payload);

// A complete token: the signing input, ".", and the base64url signature over it. `header` and
// `payload` are taken as they are (any JSON, or none).
std::string SignHs256(std::string_view payload, std::string_view key,
                      std::string_view header = kHs256Header);
std::string SignRs256(EVP_PKEY* key, std::string_view payload,
                      std::string_view header = kRs256Header);

// {"sub":"<sub>","exp":<exp><extra>}: `extra` is spliced in as it is (",\"nbf\":123").
std::string ClaimsJson(const std::string& sub, int64_t exp, const std::string& extra = "");

}  // namespace push::testing
