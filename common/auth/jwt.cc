#include "common/auth/jwt.h"

#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include <array>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/auth/openssl_ptr.h"
#include "common/base/ids.h"

namespace push {
namespace {

constexpr int kMinRsaBits = 2048;
constexpr size_t kSha256Bytes = 32;

// Base64url alphabet value of `c`, or -1.
int Base64UrlValue(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

absl::Status Refuse(std::string_view reason) {
  return absl::UnauthenticatedError(std::string(reason));
}

// A NumericDate (RFC 7519 2): seconds since the epoch, integer or not. Absent = nullopt in
// `*out`; present but not a finite number = false.
bool ReadNumericDate(const boost::json::object& obj, std::string_view name,
                     std::optional<absl::Time>* out) {
  const boost::json::value* v = obj.if_contains(boost::json::string_view(name.data(), name.size()));
  if (v == nullptr) {
    out->reset();
    return true;
  }
  if (v->is_int64()) {
    *out = absl::FromUnixSeconds(v->get_int64());
  } else if (v->is_uint64()) {
    *out = absl::InfiniteFuture();  // beyond int64 seconds
  } else if (v->is_double() && std::isfinite(v->get_double())) {
    *out = absl::UnixEpoch() + absl::Seconds(v->get_double());  // saturates, no overflow
  } else {
    return false;
  }
  return true;
}

}  // namespace

struct JwtVerifier::Key {
  OpenSslPtr<EVP_PKEY, EVP_PKEY_free> pkey;
};

bool Base64UrlDecode(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 == 1) return false;
  out->reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    int v = Base64UrlValue(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits (2 or 4) must be zero: a non-canonical encoding is refused.
  return (acc & ((1u << bits) - 1)) == 0;
}

std::string Base64UrlEncode(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3F]);
  return out;
}

JwtVerifier::JwtVerifier(JwtOptions options) : options_(std::move(options)) {}
JwtVerifier::~JwtVerifier() = default;

absl::StatusOr<std::unique_ptr<JwtVerifier>> JwtVerifier::Create(JwtOptions options) {
  if (options.hs256_secret.empty() && options.rs256_public_key_pem.empty()) {
    return absl::InvalidArgumentError("no key: give an HS256 secret or an RS256 public key");
  }
  if (!options.hs256_secret.empty() && options.hs256_secret.size() < kMinHs256SecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the HS256 secret has ",
                                                   options.hs256_secret.size(), " bytes; at least ",
                                                   kMinHs256SecretBytes, " are needed"));
  }
  if (options.leeway < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the leeway must not be negative");
  }
  if (options.clock == nullptr) options.clock = Clock::Real();
  std::unique_ptr<Key> key;
  if (!options.rs256_public_key_pem.empty()) {
    EVP_PKEY* raw = nullptr;
    // Accepts "PUBLIC KEY" (SubjectPublicKeyInfo) and "RSA PUBLIC KEY" (PKCS#1) PEM.
    OpenSslPtr<OSSL_DECODER_CTX, OSSL_DECODER_CTX_free> dctx(OSSL_DECODER_CTX_new_for_pkey(
        &raw, "PEM", nullptr, "RSA", EVP_PKEY_PUBLIC_KEY, nullptr, nullptr));
    const auto* data = reinterpret_cast<const unsigned char*>(options.rs256_public_key_pem.data());
    size_t len = options.rs256_public_key_pem.size();
    if (!dctx || OSSL_DECODER_from_data(dctx.get(), &data, &len) != 1 || raw == nullptr) {
      return absl::InvalidArgumentError("the RS256 key is not a PEM RSA public key");
    }
    key = std::make_unique<Key>();
    key->pkey.reset(raw);
    if (EVP_PKEY_get_bits(raw) < kMinRsaBits) {
      return absl::InvalidArgumentError(absl::StrCat("the RS256 key has ", EVP_PKEY_get_bits(raw),
                                                     " bits; at least ", kMinRsaBits,
                                                     " are needed"));
    }
  }
  std::unique_ptr<JwtVerifier> verifier(new JwtVerifier(std::move(options)));
  verifier->rs256_key_ = std::move(key);
  return verifier;
}

absl::StatusOr<JwtClaims> JwtVerifier::Verify(std::string_view token) const {
  if (token.empty()) return Refuse("missing token");
  if (token.size() > kMaxJwtBytes) return Refuse("token too long");
  size_t dot1 = token.find('.');
  size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return Refuse("malformed token: expected three base64url parts");
  }
  std::string_view header_b64 = token.substr(0, dot1);
  std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string_view signature_b64 = token.substr(dot2 + 1);
  std::string header_json, payload_json, signature;
  if (!Base64UrlDecode(header_b64, &header_json) || !Base64UrlDecode(payload_b64, &payload_json) ||
      !Base64UrlDecode(signature_b64, &signature)) {
    return Refuse("malformed token: bad base64url");
  }

  unsigned char buffer[4096];
  boost::json::monotonic_resource mr(buffer, sizeof(buffer));
  boost::system::error_code ec;
  boost::json::value header = boost::json::parse(header_json, ec, &mr);
  if (ec || !header.is_object()) return Refuse("malformed token: header is not a JSON object");
  const boost::json::object& header_obj = header.get_object();
  const boost::json::value* alg = header_obj.if_contains("alg");
  if (alg == nullptr || !alg->is_string()) return Refuse("malformed token: no alg");
  // We understand no JWS extensions, so a token that marks any as critical is refused (RFC 7515
  // 4.1.11).
  if (header_obj.contains("crit")) return Refuse("token alg not accepted");

  // The alg picks the key, and each alg has exactly one key: an HS256 token can never be checked
  // against the RSA key's bytes, and `none` has no key at all.
  const std::string_view signing_input = token.substr(0, dot2);
  if (alg->get_string() == "HS256" && !options_.hs256_secret.empty()) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (HMAC(EVP_sha256(), options_.hs256_secret.data(),
             static_cast<int>(options_.hs256_secret.size()),
             reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(),
             mac, &mac_len) == nullptr ||
        mac_len != kSha256Bytes || signature.size() != kSha256Bytes ||
        CRYPTO_memcmp(mac, signature.data(), kSha256Bytes) != 0) {
      return Refuse("bad token signature");
    }
  } else if (alg->get_string() == "RS256" && rs256_key_ != nullptr) {
    OpenSslPtr<EVP_MD_CTX, EVP_MD_CTX_free> ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    if (!ctx ||
        EVP_DigestVerifyInit(ctx.get(), &pctx, EVP_sha256(), nullptr, rs256_key_->pkey.get()) !=
            1 ||
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0 ||
        EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                         signature.size(),
                         reinterpret_cast<const unsigned char*>(signing_input.data()),
                         signing_input.size()) != 1) {
      return Refuse("bad token signature");
    }
  } else {
    return Refuse("token alg not accepted");
  }

  // Only a signed payload is parsed.
  boost::json::value payload = boost::json::parse(payload_json, ec, &mr);
  if (ec || !payload.is_object()) return Refuse("malformed token: payload is not a JSON object");
  const boost::json::object& claims = payload.get_object();
  const boost::json::value* sub = claims.if_contains("sub");
  if (sub == nullptr || !sub->is_string()) return Refuse("token has no sub");
  std::string_view user(sub->get_string().data(), sub->get_string().size());
  if (!ValidateUserId(user).ok()) return Refuse("token sub is not a valid user id");
  std::optional<absl::Time> exp, nbf;
  if (!ReadNumericDate(claims, "exp", &exp)) return Refuse("token exp is not a number");
  if (!exp) return Refuse("token has no exp");
  if (!ReadNumericDate(claims, "nbf", &nbf)) return Refuse("token nbf is not a number");
  absl::Time now = options_.clock->Now();
  absl::Time valid_until = *exp + options_.leeway;
  if (now >= valid_until) return Refuse("token expired");
  if (nbf && now < *nbf - options_.leeway) return Refuse("token not yet valid");
  JwtClaims out;
  out.user_id = std::string(user);
  out.expires_at = *exp;
  out.valid_until = valid_until;
  return out;
}

}  // namespace push
