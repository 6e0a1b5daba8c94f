// libFuzzer target for the JWT parser/verifier. The first input byte picks what the rest is:
//   0: a token, verified as it comes (forgeries, malformed parts, bad base64url and JSON);
//   1: "<header JSON>\n<payload JSON>", signed here with the HS256 secret before verifying, so
//      the claims code (sub, exp, nbf, numbers of every shape) is reached past the signature;
//   2: base64url text: a successful decode must re-encode to exactly the input (canonical).
// Anything that crashes, leaks, hits UB, accepts a token without its true signature or breaks
// the round trip aborts.

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "common/auth/jwt.h"
#include "tests/testing/jwt_signing.h"

namespace {

constexpr char kSecret[] = "fuzz-secret-0123456789abcdef0123456789abcdef";

class FixedClock final : public push::Clock {
 public:
  absl::Time Now() const override { return absl::FromUnixSeconds(1'700'000'000); }
};

// A fixed RS256 public key whose private key was thrown away when it was made (openssl genpkey
// -algorithm RSA, 2048 bits): a key made at every start would make the coverage of the RSA
// verification path, and so the fuzzer's run, differ from one process to the next.
constexpr char kRs256PublicPem[] = R"(-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAowqzgWgr3cG/XTgZtFw4
rj+rBW65aWO/l2bGYyvDpNuCJ/JXxVDka7Qq9O219ZnplaZPvlm13+sz51ES95Hf
gCfFIEpBLSIvdKJnTATr5meTs0L1d6BgGJhW+EwHSGSufcm7tp4f57K6b0Ll+SfF
zDMm59ul3bU2WSaxXRlGzcFJZklKlFeWzTVgMaXBHnZ0dl3Sf2xw/IaXEPvO+sca
v8+R1oYSXYsCqIn7+vUw2CXUXiQknCs6mitwje+tV3SOiTT6WXputqm2X6VMLNmA
bipk8DB5aDyn1xbOuvC+UNeKLIiHcTY4PkvTZNvUTwFYlywxHw4d969IIdjSHzT4
UQIDAQAB
-----END PUBLIC KEY-----
)";

const push::JwtVerifier& Verifier() {
  static const push::JwtVerifier* verifier = [] {
    static FixedClock clock;
    push::JwtOptions options;
    options.hs256_secret = kSecret;
    options.rs256_public_key_pem = kRs256PublicPem;
    options.clock = &clock;
    auto v = push::JwtVerifier::Create(options);
    if (!v.ok()) std::abort();
    return v->release();
  }();
  return *verifier;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const push::JwtVerifier& verifier = Verifier();
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      absl::StatusOr<push::JwtClaims> claims = verifier.Verify(rest);
      // The RSA private key is gone, and the fuzzer cannot forge an HMAC: only a token carrying
      // the true HS256 signature of its own first two parts may be accepted.
      if (claims.ok()) {
        size_t dot2 = rest.rfind('.');
        size_t dot1 = rest.find('.');
        std::string header, payload;
        if (!push::Base64UrlDecode(rest.substr(0, dot1), &header) ||
            !push::Base64UrlDecode(rest.substr(dot1 + 1, dot2 - dot1 - 1), &payload) ||
            push::testing::SignHs256(payload, kSecret, header) != rest) {
          std::abort();
        }
      }
      break;
    }
    case 1: {
      size_t nl = rest.find('\n');
      if (nl == std::string_view::npos) return 0;
      std::string token =
          push::testing::SignHs256(rest.substr(nl + 1), kSecret, rest.substr(0, nl));
      absl::StatusOr<push::JwtClaims> claims = verifier.Verify(token);
      if (claims.ok() && (claims->user_id.empty() || claims->valid_until < claims->expires_at)) {
        std::abort();
      }
      break;
    }
    case 2: {
      std::string decoded;
      if (push::Base64UrlDecode(rest, &decoded) && push::Base64UrlEncode(decoded) != rest) {
        std::abort();
      }
      break;
    }
  }
  return 0;
}
