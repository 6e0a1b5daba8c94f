// JwtVerifier: HS256 and RS256 tokens made here with OpenSSL (keys generated at run time), and
// every way a token can be wrong: forged, expired, not yet valid, wrong alg for the key (the
// HS/RS confusion attack included), alg none, malformed parts, bad sub; leeway edges on a fake
// clock.

#include "common/auth/jwt.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/config/config.h"
#include "gtest/gtest.h"
#include "tests/testing/fakes.h"
#include "tests/testing/jwt_signing.h"
#include "tests/testing/temp_files.h"

namespace push {
namespace {

using push::testing::ClaimsJson;
using push::testing::FakeClock;
using push::testing::Hs256Mac;
using push::testing::JwtSigningInput;
using push::testing::kHs256Header;
using push::testing::Pkey;
using push::testing::PublicKeyPem;
using push::testing::SignHs256;
using push::testing::SignRs256;
using push::testing::TempFile;

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-test-secret";
// Where the test clock starts.
constexpr int64_t kNow = FakeClock::kStartUnixSeconds;

Pkey GenerateRsa(int bits = 2048) { return Pkey(EVP_RSA_gen(bits)); }

// Tokens signed with this file's secret unless told otherwise.
std::string HsToken(std::string_view payload, std::string_view key = kSecret,
                    std::string_view header = kHs256Header) {
  return SignHs256(payload, key, header);
}

std::string Claims(const std::string& sub, int64_t exp_offset, std::string extra = "") {
  return ClaimsJson(sub, kNow + exp_offset, extra);
}

class JwtTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = GenerateRsa().release();
    other_rsa_ = GenerateRsa().release();
  }
  static void TearDownTestSuite() {
    EVP_PKEY_free(rsa_);
    EVP_PKEY_free(other_rsa_);
  }

  std::unique_ptr<JwtVerifier> Make(bool hs, bool rs, absl::Duration leeway = absl::Seconds(30)) {
    JwtOptions o;
    if (hs) o.hs256_secret = kSecret;
    if (rs) o.rs256_public_key_pem = PublicKeyPem(rsa_);
    o.leeway = leeway;
    o.clock = &clock_;
    absl::StatusOr<std::unique_ptr<JwtVerifier>> v = JwtVerifier::Create(o);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? std::move(*v) : nullptr;
  }

  static void ExpectRefused(const JwtVerifier& v, const std::string& token,
                            std::string_view reason) {
    absl::StatusOr<JwtClaims> c = v.Verify(token);
    ASSERT_FALSE(c.ok()) << token;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_NE(std::string(c.status().message()).find(reason), std::string::npos)
        << c.status() << " wanted: " << reason;
  }

  static EVP_PKEY* rsa_;
  static EVP_PKEY* other_rsa_;
  FakeClock clock_;
};

EVP_PKEY* JwtTest::rsa_ = nullptr;
EVP_PKEY* JwtTest::other_rsa_ = nullptr;

TEST(Base64UrlTest, RoundTripsAndRefusesNonCanonicalInput) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00\x01"}) {
    std::string out;
    ASSERT_TRUE(Base64UrlDecode(Base64UrlEncode(s), &out)) << s;
    EXPECT_EQ(out, s);
  }
  std::string out;
  EXPECT_TRUE(Base64UrlDecode("-_8", &out));
  EXPECT_EQ(out, "\xfb\xff");
  EXPECT_FALSE(Base64UrlDecode("Zm9v=", &out));  // padding
  EXPECT_FALSE(Base64UrlDecode("Zm+v", &out));   // base64, not base64url
  EXPECT_FALSE(Base64UrlDecode("Zm9 v", &out));
  EXPECT_FALSE(Base64UrlDecode("Z", &out));   // impossible length
  EXPECT_FALSE(Base64UrlDecode("Zh", &out));  // "f" is "Zg": non-zero trailing bits
  EXPECT_TRUE(Base64UrlDecode("Zg", &out));
}

TEST_F(JwtTest, ValidHs256TokenGivesSubAndExpiry) {
  auto v = Make(true, false);
  absl::StatusOr<JwtClaims> c = v->Verify(HsToken(Claims("alice", 60)));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->user_id, "alice");
  EXPECT_EQ(c->expires_at, absl::FromUnixSeconds(kNow + 60));
  EXPECT_EQ(c->valid_until, absl::FromUnixSeconds(kNow + 90));
}

TEST_F(JwtTest, ValidRs256TokenGivesSub) {
  auto v = Make(false, true);
  absl::StatusOr<JwtClaims> c = v->Verify(SignRs256(rsa_, Claims("bob@example.com", 60)));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->user_id, "bob@example.com");
}

TEST_F(JwtTest, BothKeysConfiguredAcceptsBothAlgs) {
  auto v = Make(true, true);
  EXPECT_TRUE(v->Verify(HsToken(Claims("a", 60))).ok());
  EXPECT_TRUE(v->Verify(SignRs256(rsa_, Claims("a", 60))).ok());
}

TEST_F(JwtTest, ForgedSignaturesAreRefused) {
  auto v = Make(true, true);
  ExpectRefused(*v, HsToken(Claims("alice", 60), "another-secret-of-enough-length-000"),
                "bad token signature");
  ExpectRefused(*v, SignRs256(other_rsa_, Claims("alice", 60)), "bad token signature");
  // A valid signature moved onto another payload.
  std::string good = HsToken(Claims("alice", 60));
  std::string evil = HsToken(Claims("mallory", 60));
  std::string spliced = evil.substr(0, evil.rfind('.')) + good.substr(good.rfind('.'));
  ExpectRefused(*v, spliced, "bad token signature");
  // Truncated or empty signatures.
  ExpectRefused(*v, good.substr(0, good.size() - 2), "");
  ExpectRefused(*v, good.substr(0, good.rfind('.') + 1), "bad token signature");
  std::string rs = SignRs256(rsa_, Claims("alice", 60));
  ExpectRefused(*v, rs.substr(0, rs.rfind('.') + 1), "bad token signature");
}

TEST_F(JwtTest, WrongAlgForTheConfiguredKeyIsRefused) {
  auto hs_only = Make(true, false);
  ExpectRefused(*hs_only, SignRs256(rsa_, Claims("alice", 60)), "token alg not accepted");
  auto rs_only = Make(false, true);
  ExpectRefused(*rs_only, HsToken(Claims("alice", 60)), "token alg not accepted");
  for (const char* alg : {"HS384", "HS512", "RS384", "RS512", "PS256", "ES256", "hs256", ""}) {
    SCOPED_TRACE(alg);
    auto both = Make(true, true);
    ExpectRefused(*both,
                  HsToken(Claims("alice", 60), kSecret, absl::StrCat(R"({"alg":")", alg, R"("})")),
                  "token alg not accepted");
  }
}

TEST_F(JwtTest, HsTokenSignedWithThePublicKeyPemIsRefused) {
  // The classic confusion: a verifier that takes "the key" for whatever alg the token names
  // would check this HMAC against the public PEM bytes, which everyone has.
  std::string pem = PublicKeyPem(rsa_);
  std::string attack = HsToken(Claims("alice", 60), pem);
  ExpectRefused(*Make(false, true), attack, "token alg not accepted");
  ExpectRefused(*Make(true, true), attack, "bad token signature");
}

TEST_F(JwtTest, AlgNoneIsRefused) {
  auto v = Make(true, true);
  for (const char* header : {R"({"alg":"none"})", R"({"alg":"None"})", R"({"alg":"NONE"})"}) {
    std::string input = JwtSigningInput(header, Claims("alice", 60));
    ExpectRefused(*v, input + ".", "token alg not accepted");
    ExpectRefused(*v, input + "." + Base64UrlEncode(Hs256Mac(kSecret, input)),
                  "token alg not accepted");
  }
}

TEST_F(JwtTest, CritHeaderIsRefused) {
  auto v = Make(true, false);
  ExpectRefused(*v, HsToken(Claims("a", 60), kSecret, R"({"alg":"HS256","crit":["exp"]})"),
                "token alg not accepted");
}

TEST_F(JwtTest, MalformedTokensAreRefused) {
  auto v = Make(true, false);
  std::string good = HsToken(Claims("alice", 60));
  ExpectRefused(*v, "", "missing token");
  ExpectRefused(*v, "abc", "malformed token");
  ExpectRefused(*v, "a.b", "malformed token");
  ExpectRefused(*v, good + ".x", "malformed token");
  ExpectRefused(*v, good + ".", "malformed token");
  ExpectRefused(*v, "..", "malformed token");
  ExpectRefused(*v, "!!!." + good.substr(good.find('.') + 1), "bad base64url");
  ExpectRefused(*v, good + "=", "bad base64url");
  ExpectRefused(*v, std::string(kMaxJwtBytes + 1, 'a'), "token too long");
  // Signed, but the header or payload is not a JSON object.
  ExpectRefused(*v, HsToken(Claims("a", 60), kSecret, "not json"), "header is not a JSON");
  ExpectRefused(*v, HsToken(Claims("a", 60), kSecret, R"(["alg","HS256"])"), "header");
  ExpectRefused(*v, HsToken(Claims("a", 60), kSecret, R"({"typ":"JWT"})"), "no alg");
  ExpectRefused(*v, HsToken(Claims("a", 60), kSecret, R"({"alg":256})"), "no alg");
  ExpectRefused(*v, HsToken(R"({"sub":"a","exp":)"), "payload is not a JSON object");
  ExpectRefused(*v, HsToken("42"), "payload is not a JSON object");
}

TEST_F(JwtTest, SubMustBeAValidUserId) {
  auto v = Make(true, false);
  ExpectRefused(*v, HsToken(absl::StrCat(R"({"exp":)", kNow + 60, "}")), "token has no sub");
  ExpectRefused(*v, HsToken(absl::StrCat(R"({"sub":7,"exp":)", kNow + 60, "}")),
                "token has no sub");
  ExpectRefused(*v, HsToken(Claims("", 60)), "not a valid user id");
  ExpectRefused(*v, HsToken(Claims("a b", 60)), "not a valid user id");
  ExpectRefused(*v, HsToken(Claims("a/b", 60)), "not a valid user id");
  ExpectRefused(*v, HsToken(Claims(std::string(129, 'a'), 60)), "not a valid user id");
  EXPECT_TRUE(v->Verify(HsToken(Claims(std::string(128, 'a'), 60))).ok());
}

TEST_F(JwtTest, ExpIsRequiredAndEnforcedWithLeeway) {
  auto v = Make(true, false, absl::Seconds(30));
  ExpectRefused(*v, HsToken(R"({"sub":"a"})"), "token has no exp");
  ExpectRefused(*v, HsToken(R"({"sub":"a","exp":"soon"})"), "exp is not a number");
  ExpectRefused(*v, HsToken(R"({"sub":"a","exp":null})"), "exp is not a number");
  EXPECT_TRUE(v->Verify(HsToken(Claims("a", -29))).ok());         // within the leeway
  ExpectRefused(*v, HsToken(Claims("a", -30)), "token expired");  // exactly at the edge
  ExpectRefused(*v, HsToken(Claims("a", -3600)), "token expired");
  // Fractional NumericDate.
  EXPECT_TRUE(
      v->Verify(HsToken(absl::StrCat(R"({"sub":"a","exp":)", std::to_string(kNow - 29.5), "}")))
          .ok());
  ExpectRefused(*v, HsToken(absl::StrCat(R"({"sub":"a","exp":)", std::to_string(kNow - 30.5), "}")),
                "token expired");
  // Absurd values neither overflow nor pass when they should not.
  EXPECT_TRUE(v->Verify(HsToken(R"({"sub":"a","exp":18446744073709551615})")).ok());
  EXPECT_TRUE(v->Verify(HsToken(R"({"sub":"a","exp":1e300})")).ok());
  ExpectRefused(*v, HsToken(R"({"sub":"a","exp":-9223372036854775808})"), "token expired");
  ExpectRefused(*v, HsToken(R"({"sub":"a","exp":-1e300})"), "token expired");
}

TEST_F(JwtTest, ExpWithZeroLeewayIsExact) {
  auto v = Make(true, false, absl::ZeroDuration());
  EXPECT_TRUE(v->Verify(HsToken(Claims("a", 1))).ok());
  ExpectRefused(*v, HsToken(Claims("a", 0)), "token expired");
  clock_.Advance(-absl::Milliseconds(1));
  EXPECT_TRUE(v->Verify(HsToken(Claims("a", 0))).ok());
}

TEST_F(JwtTest, NbfIsEnforcedWithLeewayWhenPresent) {
  auto v = Make(true, false, absl::Seconds(30));
  EXPECT_TRUE(v->Verify(HsToken(Claims("a", 600, absl::StrCat(R"(,"nbf":)", kNow + 30)))).ok());
  ExpectRefused(*v, HsToken(Claims("a", 600, absl::StrCat(R"(,"nbf":)", kNow + 31))),
                "token not yet valid");
  ExpectRefused(*v, HsToken(Claims("a", 600, R"(,"nbf":"later")")), "nbf is not a number");
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(v->Verify(HsToken(Claims("a", 600, absl::StrCat(R"(,"nbf":)", kNow + 31)))).ok());
}

TEST_F(JwtTest, ClockDecidesExpiry) {
  auto v = Make(false, true, absl::Seconds(5));
  std::string token = SignRs256(rsa_, Claims("a", 10));
  EXPECT_TRUE(v->Verify(token).ok());
  clock_.Advance(absl::Seconds(14));
  EXPECT_TRUE(v->Verify(token).ok());
  clock_.Advance(absl::Seconds(1));
  ExpectRefused(*v, token, "token expired");
}

TEST_F(JwtTest, SignatureIsCheckedBeforeClaims) {
  // An expired forged token says "bad signature", not "expired": nothing unsigned is trusted.
  auto v = Make(true, false);
  ExpectRefused(*v, HsToken(Claims("a", -3600), "another-secret-of-enough-length-000"),
                "bad token signature");
}

TEST(JwtCreateTest, BadKeysAreRefusedAtCreation) {
  JwtOptions none;
  EXPECT_EQ(JwtVerifier::Create(none).status().code(), absl::StatusCode::kInvalidArgument);
  JwtOptions short_secret;
  short_secret.hs256_secret = "short";
  absl::Status s = JwtVerifier::Create(short_secret).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("32"), std::string::npos) << s;
  JwtOptions garbage;
  garbage.rs256_public_key_pem = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n";
  EXPECT_EQ(JwtVerifier::Create(garbage).status().code(), absl::StatusCode::kInvalidArgument);
  Pkey small(EVP_RSA_gen(1024));
  JwtOptions weak;
  weak.rs256_public_key_pem = PublicKeyPem(small.get());
  s = JwtVerifier::Create(weak).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("2048"), std::string::npos) << s;
  Pkey ec(EVP_EC_gen("P-256"));
  JwtOptions not_rsa;
  not_rsa.rs256_public_key_pem = PublicKeyPem(ec.get());
  EXPECT_EQ(JwtVerifier::Create(not_rsa).status().code(), absl::StatusCode::kInvalidArgument);
}

void ExpectConfigError(const std::vector<std::string>& args, const std::string& flag) {
  absl::StatusOr<Config> c = ParseConfig(args, {});
  ASSERT_FALSE(c.ok()) << args[0];
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(c.status().message()).find(flag), std::string::npos) << c.status();
}

TEST(JwtConfigTest, JwtNeedsAUsableKeyFileNamedInTheError) {
  ExpectConfigError({"--auth=jwt"}, "--jwt_hs256_secret_file");
  ExpectConfigError({"--auth=jwt", "--jwt_hs256_secret_file=/nonexistent/secret"},
                    "--jwt_hs256_secret_file");
  ExpectConfigError({"--auth=jwt", "--jwt_rs256_public_key_file=/nonexistent/key.pem"},
                    "--jwt_rs256_public_key_file");
  TempFile short_secret("short\n");
  ExpectConfigError({"--auth=jwt", "--jwt_hs256_secret_file=" + short_secret.path()},
                    "--jwt_hs256_secret_file");
  TempFile empty("");
  ExpectConfigError({"--auth=jwt", "--jwt_hs256_secret_file=" + empty.path()},
                    "--jwt_hs256_secret_file");
  TempFile not_pem("not a key");
  ExpectConfigError({"--auth=jwt", "--jwt_rs256_public_key_file=" + not_pem.path()},
                    "--jwt_rs256_public_key_file");
  TempFile secret(std::string(kSecret) + "\n");
  ExpectConfigError({"--auth=none", "--jwt_hs256_secret_file=" + secret.path()},
                    "--jwt_hs256_secret_file");
  ExpectConfigError({"--auth=jwt", "--jwt_hs256_secret_file=" + secret.path(), "--jwt_leeway=-1s"},
                    "--jwt_leeway");
}

TEST(JwtConfigTest, KeysAreReadAtStart) {
  TempFile secret(std::string(kSecret) + "\n");
  Pkey rsa = GenerateRsa();
  TempFile pem(PublicKeyPem(rsa.get()));
  absl::StatusOr<Config> c =
      ParseConfig({"--auth=jwt", "--jwt_hs256_secret_file=" + secret.path(),
                   "--jwt_rs256_public_key_file=" + pem.path(), "--jwt_leeway=0s"},
                  {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->auth, "jwt");
  EXPECT_EQ(c->jwt_hs256_secret, kSecret);  // the trailing newline is not part of it
  EXPECT_EQ(c->jwt_rs256_public_key, PublicKeyPem(rsa.get()));
  EXPECT_EQ(c->jwt_leeway, absl::ZeroDuration());
  absl::StatusOr<Config> defaults = ParseConfig({}, {});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->jwt_leeway, absl::Seconds(30));
}

}  // namespace
}  // namespace push
