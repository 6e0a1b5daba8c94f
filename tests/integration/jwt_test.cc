// --auth=jwt against a real pushd: keys generated here and written to a temp dir, tokens signed
// here. A good token connects as its sub and gets that user's pushes (and only those); every bad
// token is refused with 401 before the upgrade; an open connection is closed with 4001 when its
// token expires unless a refresh frame for the same user moves the expiry.

#include "common/auth/jwt.h"

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/jwt_signing.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/temp_files.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr char kSecret[] = "integration-secret-0123456789abcdef0123456789";

int64_t NowSeconds() { return absl::ToUnixSeconds(absl::Now()); }

// Tokens signed with this file's secret unless told otherwise.
std::string HsToken(std::string_view payload, std::string_view key = kSecret,
                    std::string_view header = kHs256Header) {
  return SignHs256(payload, key, header);
}

class JwtIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = EVP_RSA_gen(2048);
    other_rsa_ = EVP_RSA_gen(2048);
  }
  static void TearDownTestSuite() {
    EVP_PKEY_free(rsa_);
    EVP_PKEY_free(other_rsa_);
  }

  // pushd with both keys (or only the ones asked for) and the given leeway.
  std::unique_ptr<PushdProcess> Start(bool hs, bool rs, const std::string& leeway = "30s") {
    std::vector<std::string> args = {"--auth=jwt", "--jwt_leeway=" + leeway};
    if (hs) args.push_back("--jwt_hs256_secret_file=" + keys_.Write("secret", kSecret));
    if (rs) {
      args.push_back("--jwt_rs256_public_key_file=" + keys_.Write("key.pem", PublicKeyPem(rsa_)));
    }
    auto pushd = std::make_unique<PushdProcess>(args);
    EXPECT_TRUE(pushd->started());
    return pushd;
  }

  // The refusal of an upgrade, with its JSON reason.
  static HttpResponse Upgrade(int port, const std::string& target,
                              std::map<std::string, std::string> headers = {}) {
    for (const auto& [name, value] : UpgradeHeaders()) headers.emplace(name, value);
    return HttpRequest(port, "GET", target, headers);
  }

  static void ExpectRefused(int port, const std::string& target, const std::string& reason,
                            const std::map<std::string, std::string>& headers = {}) {
    SCOPED_TRACE(target);
    int status = 0;
    EXPECT_EQ(WsClient::Connect(port, target, headers, &status), nullptr);
    EXPECT_EQ(status, 401);
    HttpResponse res = Upgrade(port, target, headers);
    EXPECT_EQ(res.status, 401);
    EXPECT_NE(res.body.find(reason), std::string::npos) << res.body << " wanted: " << reason;
    EXPECT_NE(res.headers["www-authenticate"].find("Bearer"), std::string::npos);
  }

  static std::unique_ptr<WsClient> ConnectAs(
      int port, const std::string& target, const std::string& user,
      const std::map<std::string, std::string>& headers = {}) {
    int status = 0;
    json::value welcome;
    auto ws = ConnectAndReadWelcome(port, target, &welcome, headers, &status);
    EXPECT_TRUE(ws) << target << " -> " << status;
    if (!ws) return nullptr;
    EXPECT_EQ(welcome.at("user_id").as_string(), user);
    return ws;
  }

  static void ExpectMessage(WsClient& ws, const std::string& data) {
    json::value m = ws.ReadJson();
    ASSERT_TRUE(m.is_object()) << json::serialize(m);
    EXPECT_EQ(m.at("type").as_string(), "message");
    EXPECT_EQ(json::serialize(m.at("data")), data);
  }

  static EVP_PKEY* rsa_;
  static EVP_PKEY* other_rsa_;
  TempDir keys_;
};

EVP_PKEY* JwtIntegrationTest::rsa_ = nullptr;
EVP_PKEY* JwtIntegrationTest::other_rsa_ = nullptr;

TEST_F(JwtIntegrationTest, ValidTokensConnectAsTheirSubAndGetItsPushes) {
  auto pushd = Start(true, true);
  auto stub = pushd->Stub();
  int port = pushd->ws_port();
  auto hs =
      ConnectAs(port, "/ws?token=" + HsToken(ClaimsJson("alice", NowSeconds() + 600)), "alice");
  ASSERT_TRUE(hs);
  auto rs = ConnectAs(port, "/ws?token=" + SignRs256(rsa_, ClaimsJson("alice", NowSeconds() + 600)),
                      "alice");
  ASSERT_TRUE(rs);
  auto bearer = ConnectAs(
      port, "/ws", "bob",
      {{"Authorization", "Bearer " + SignRs256(rsa_, ClaimsJson("bob", NowSeconds() + 600))}});
  ASSERT_TRUE(bearer);
  ASSERT_TRUE(DoPush(*stub, "alice", R"({"to":"alice"})").ok());
  ASSERT_TRUE(DoPush(*stub, "bob", R"({"to":"bob"})").ok());
  ExpectMessage(*hs, R"({"to":"alice"})");
  ExpectMessage(*rs, R"({"to":"alice"})");
  ExpectMessage(*bearer, R"({"to":"bob"})");
}

TEST_F(JwtIntegrationTest, TokenForAliceCannotReadBob) {
  auto pushd = Start(true, false);
  auto stub = pushd->Stub();
  std::string token = HsToken(ClaimsJson("alice", NowSeconds() + 600));
  ASSERT_TRUE(DoPush(*stub, "bob", R"({"secret":"for bob"})").ok());
  // The query's user_id is ignored: the connection is alice's, and replays only alice's stream.
  auto ws = ConnectAs(pushd->ws_port(), "/ws?user_id=bob&since=0&token=" + token, "alice");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(DoPush(*stub, "bob", R"({"secret":"for bob again"})").ok());
  ASSERT_TRUE(DoPush(*stub, "alice", R"({"for":"alice"})").ok());
  ExpectMessage(*ws, R"({"for":"alice"})");
  EXPECT_EQ(DoList(*stub, "bob").total(), 0u);
  EXPECT_EQ(DoList(*stub, "alice").total(), 1u);

  // The compatibility route takes the user from the token too.
  int status = 0;
  auto compat =
      WsClient::Connect(pushd->ws_port(), "/getPushNews?userId=bob&token=" + token, {}, &status);
  ASSERT_TRUE(compat) << status;
  // The compatibility route sends no welcome frame: wait until the connection is registered (as
  // alice's second), or the next push could reach only the first one.
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub, "alice").total() == 2; }));
  EXPECT_EQ(DoList(*stub, "bob").total(), 0u);
  ASSERT_TRUE(DoPush(*stub, "bob", R"({"secret":"bob3"})").ok());
  ASSERT_TRUE(DoPush(*stub, "alice", R"({"n":2})").ok());
  WsEvent e = compat->Read();
  ASSERT_EQ(e.kind, WsEvent::kText);
  // The first connection's cursor moves when its write completes, which can be just after its
  // client read the message: then this connection replays alice's first message too. Never bob's.
  if (e.data == R"({"for":"alice"})") {
    e = compat->Read();
    ASSERT_EQ(e.kind, WsEvent::kText);
  }
  EXPECT_EQ(e.data, R"({"n":2})");
  ExpectRefused(pushd->ws_port(), "/getPushNews?userId=bob", "missing token");
}

TEST_F(JwtIntegrationTest, BadTokensGet401BeforeTheUpgrade) {
  auto pushd = Start(true, false);
  int port = pushd->ws_port();
  int64_t now = NowSeconds();
  std::string pem = PublicKeyPem(rsa_);
  ExpectRefused(port, "/ws", "missing token");
  ExpectRefused(port, "/ws?user_id=alice", "missing token");
  ExpectRefused(port, "/ws?token=", "missing token");
  ExpectRefused(port, "/ws?token=not.a.jwt", "malformed token");
  ExpectRefused(
      port,
      "/ws?token=" + HsToken(ClaimsJson("alice", now + 600), "forged-secret-forged-secret-0000"),
      "bad token signature");
  ExpectRefused(port, "/ws?token=" + HsToken(ClaimsJson("alice", now - 3600)), "token expired");
  ExpectRefused(port,
                "/ws?token=" +
                    HsToken(ClaimsJson("alice", now + 600, absl::StrCat(R"(,"nbf":)", now + 3600))),
                "token not yet valid");
  // RS256 with only the HS secret configured, and the HS/RS confusion attack.
  ExpectRefused(port, "/ws?token=" + SignRs256(rsa_, ClaimsJson("alice", now + 600)),
                "token alg not accepted");
  ExpectRefused(port, "/ws?token=" + HsToken(ClaimsJson("alice", now + 600), pem),
                "bad token signature");
  std::string none = absl::StrCat(Base64UrlEncode(R"({"alg":"none"})"), ".",
                                  Base64UrlEncode(ClaimsJson("alice", now + 600)), ".");
  ExpectRefused(port, "/ws?token=" + none, "token alg not accepted");
  ExpectRefused(port, "/ws?token=" + HsToken(ClaimsJson("al ice", now + 600)), "sub");
  ExpectRefused(port, "/ws?token=" + HsToken(R"({"sub":"alice"})"), "token has no exp");
  ExpectRefused(port, "/ws", "Bearer",
                {{"Authorization", "Basic " + HsToken(ClaimsJson("alice", now + 600))}});
  ExpectRefused(port, "/ws", "bad token signature",
                {{"Authorization", "Bearer " + HsToken(ClaimsJson("alice", now + 600),
                                                       "forged-secret-forged-secret-0000")}});
}

TEST_F(JwtIntegrationTest, RsOnlyServerRefusesHsTokensEvenSignedWithThePublicKey) {
  auto pushd = Start(false, true);
  int port = pushd->ws_port();
  int64_t now = NowSeconds();
  ExpectRefused(port, "/ws?token=" + HsToken(ClaimsJson("alice", now + 600)),
                "token alg not accepted");
  ExpectRefused(port, "/ws?token=" + HsToken(ClaimsJson("alice", now + 600), PublicKeyPem(rsa_)),
                "token alg not accepted");
  ExpectRefused(port, "/ws?token=" + SignRs256(other_rsa_, ClaimsJson("alice", now + 600)),
                "bad token signature");
  EXPECT_TRUE(
      ConnectAs(port, "/ws?token=" + SignRs256(rsa_, ClaimsJson("alice", now + 600)), "alice"));
}

TEST_F(JwtIntegrationTest, ExpiryClosesTheOpenConnectionWith4001) {
  auto pushd = Start(true, false, "0s");
  auto ws = ConnectAs(pushd->ws_port(),
                      "/ws?token=" + HsToken(ClaimsJson("alice", NowSeconds() + 2)), "alice");
  ASSERT_TRUE(ws);
  auto connected = steady_clock::now();
  WsEvent e = ws->Read(milliseconds(10000));
  ASSERT_EQ(e.kind, WsEvent::kClosed) << e.data;
  EXPECT_EQ(e.close_code, 4001);
  EXPECT_EQ(e.close_reason, "token expired");
  EXPECT_LE(steady_clock::now() - connected, milliseconds(4000));
  EXPECT_TRUE(WaitFor([&] { return DoList(*pushd->Stub(), "alice").total() == 0; }));
}

TEST_F(JwtIntegrationTest, RefreshWithANewTokenKeepsTheConnectionOpen) {
  auto pushd = Start(false, true, "0s");
  auto stub = pushd->Stub();
  int64_t first_exp = NowSeconds() + 2;
  auto ws = ConnectAs(pushd->ws_port(),
                      "/ws?token=" + SignRs256(rsa_, ClaimsJson("alice", first_exp)), "alice");
  ASSERT_TRUE(ws);
  std::string fresh = SignRs256(rsa_, ClaimsJson("alice", NowSeconds() + 600));
  ASSERT_TRUE(ws->SendText(absl::StrCat(R"({"type":"refresh","token":")", fresh, R"("})")));
  // Past the first token's exp the connection is still there and still delivers (a close would
  // arrive before the message). Reading with a timeout would drop the connection: wait instead.
  std::this_thread::sleep_until(std::chrono::system_clock::from_time_t(first_exp + 1));
  EXPECT_EQ(DoList(*stub, "alice").total(), 1u);
  ASSERT_TRUE(DoPush(*stub, "alice", R"({"still":"here"})").ok());
  ExpectMessage(*ws, R"({"still":"here"})");

  // A refresh with a shorter token moves the deadline earlier too.
  std::string shorter = SignRs256(rsa_, ClaimsJson("alice", NowSeconds() + 1));
  ASSERT_TRUE(ws->SendText(absl::StrCat(R"({"type":"refresh","token":")", shorter, R"("})")));
  WsEvent e = ws->Read(milliseconds(5000));
  ASSERT_EQ(e.kind, WsEvent::kClosed);
  EXPECT_EQ(e.close_code, 4001);
}

TEST_F(JwtIntegrationTest, RefreshForAnotherUserOrWithABadTokenCloses4001) {
  auto pushd = Start(true, false, "0s");
  int port = pushd->ws_port();
  int64_t now = NowSeconds();
  struct Case {
    std::string token;
    std::string reason;
  };
  const Case cases[] = {
      {HsToken(ClaimsJson("bob", now + 600)), "refresh token is for another user"},
      {HsToken(ClaimsJson("alice", now + 600), "forged-secret-forged-secret-0000"),
       "bad token signature"},
      {HsToken(ClaimsJson("alice", now - 10)), "token expired"},
      {"garbage", "malformed token"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.reason);
    auto ws = ConnectAs(port, "/ws?token=" + HsToken(ClaimsJson("alice", now + 600)), "alice");
    ASSERT_TRUE(ws);
    ASSERT_TRUE(ws->SendText(absl::StrCat(R"({"type":"refresh","token":")", c.token, R"("})")));
    WsEvent e = ws->Read();
    ASSERT_EQ(e.kind, WsEvent::kClosed);
    EXPECT_EQ(e.close_code, 4001);
    EXPECT_EQ(e.close_reason.rfind(c.reason, 0), 0u) << e.close_reason;
  }
  // A refresh frame without a token string is not a valid frame.
  auto ws = ConnectAs(port, "/ws?token=" + HsToken(ClaimsJson("alice", now + 600)), "alice");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(ws->SendText(R"({"type":"refresh","token":42})"));
  WsEvent e = ws->Read();
  ASSERT_EQ(e.kind, WsEvent::kClosed);
  EXPECT_EQ(e.close_code, 1008);
}

TEST_F(JwtIntegrationTest, RefreshWithoutJwtAuthIsAPolicyClose) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto ws = ConnectAs(pushd.ws_port(), "/ws?user_id=alice", "alice");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(ws->SendText(R"({"type":"refresh","token":"x.y.z"})"));
  WsEvent e = ws->Read();
  ASSERT_EQ(e.kind, WsEvent::kClosed);
  EXPECT_EQ(e.close_code, 1008);
}

void ExpectStartError(const std::vector<std::string>& args, const std::string& flag) {
  RunResult r = RunCommand(PushdBinary(), args, {}, 20000);
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_NE(r.err.find(flag), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(JwtIntegrationTest, BadKeyFlagsExit2NamingTheFlag) {
  const std::vector<std::string> listen = {"--grpc_listen=127.0.0.1:0", "--ws_listen=127.0.0.1:0"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.begin(), listen.begin(), listen.end());
    return args;
  };
  ExpectStartError(with({"--auth=jwt"}), "--jwt_hs256_secret_file");
  ExpectStartError(with({"--auth=jwt", "--jwt_hs256_secret_file=" + keys_.path() + "/missing"}),
                   "--jwt_hs256_secret_file");
  // A directory cannot be read as a file (root reads any file, so permissions would not do).
  ExpectStartError(with({"--auth=jwt", "--jwt_rs256_public_key_file=" + keys_.path()}),
                   "--jwt_rs256_public_key_file");
  ExpectStartError(
      with({"--auth=jwt", "--jwt_rs256_public_key_file=" + keys_.Write("bad.pem", "not a key")}),
      "--jwt_rs256_public_key_file");
  ExpectStartError(
      with({"--auth=jwt", "--jwt_hs256_secret_file=" + keys_.Write("short", "short\n")}),
      "--jwt_hs256_secret_file");
  ExpectStartError(with({"--auth=jwt", "--jwt_hs256_secret_file=" + keys_.Write("s", kSecret),
                         "--jwt_leeway=soon"}),
                   "--jwt_leeway");
}

}  // namespace
}  // namespace push::testing
