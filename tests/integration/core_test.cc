// Push -> receive over real gRPC and WebSocket clients against a real pushd process.

#include <boost/json.hpp>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;

// Connects /ws as `user` and consumes the welcome frame, which must name them.
std::unique_ptr<WsClient> ConnectAs(const PushdProcess& pushd, const std::string& user) {
  json::value welcome;
  auto ws = ConnectUser(pushd, user, "", &welcome);
  if (!ws) return nullptr;
  EXPECT_EQ(json::value_to<std::string>(welcome.at("user_id")), user);
  return ws;
}

TEST(CoreTest, PushReachesConnectedBrowserWithEnvelope) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto ws = ConnectAs(pushd, "alice");
  ASSERT_TRUE(ws);

  v1::PushResponse res;
  ASSERT_TRUE(DoPush(*stub, "alice", R"({"hello":1,"text":"héllo"})", &res).ok());
  EXPECT_EQ(res.seq(), 1u);
  EXPECT_EQ(res.delivered(), 1u);
  EXPECT_FALSE(res.message_id().empty());

  json::value frame = ws->ReadJson();
  EXPECT_EQ(frame.at("type"), "message");
  EXPECT_EQ(frame.at("seq"), 1);
  EXPECT_EQ(json::value_to<std::string>(frame.at("id")), res.message_id());
  EXPECT_EQ(frame.at("data"), json::parse(R"({"hello":1,"text":"héllo"})"));
  int64_t ts = frame.at("ts").as_int64();
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  EXPECT_LE(ts, now);
  EXPECT_GT(ts, now - 60000);
}

TEST(CoreTest, WelcomeCarriesConnectionIdAndLatestSeq) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  ASSERT_TRUE(DoPush(*stub, "bob", "1").ok());
  ASSERT_TRUE(DoPush(*stub, "bob", "2").ok());
  auto ws = WsClient::Connect(pushd.ws_port(), "/ws?user_id=bob");
  ASSERT_TRUE(ws);
  json::value welcome = ws->ReadJson();
  EXPECT_EQ(welcome.at("type"), "welcome");
  EXPECT_EQ(welcome.at("seq"), 2);
  std::string conn = std::string(welcome.at("connection_id").as_string());
  auto list = DoList(*stub, "bob");
  ASSERT_EQ(list.clients_size(), 1);
  EXPECT_EQ(list.clients(0).connection_id(), conn);
}

TEST(CoreTest, EveryConnectionOfTheUserGetsEveryMessage) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  std::vector<std::unique_ptr<WsClient>> tabs;
  for (int i = 0; i < 3; ++i) tabs.push_back(ConnectAs(pushd, "carol"));
  auto other = ConnectAs(pushd, "dave");
  for (auto& t : tabs) ASSERT_TRUE(t);
  ASSERT_TRUE(other);

  v1::PushResponse res;
  ASSERT_TRUE(DoPush(*stub, "carol", R"("for carol")", &res).ok());
  EXPECT_EQ(res.delivered(), 3u);
  ASSERT_TRUE(DoPush(*stub, "dave", R"("for dave")", &res).ok());
  EXPECT_EQ(res.delivered(), 1u);
  for (auto& t : tabs) {
    json::value frame = t->ReadJson();
    EXPECT_EQ(frame.at("data"), "for carol");
    EXPECT_EQ(frame.at("seq"), 1);
  }
  // dave gets only his own message.
  EXPECT_EQ(other->ReadJson().at("data"), "for dave");
}

TEST(CoreTest, CompatibilityRouteSendsBareData) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  auto ws = WsClient::Connect(pushd.ws_port(), "/getPushNews?userId=erin");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub, "erin").total() == 1; }));
  ASSERT_TRUE(DoPush(*stub, "erin", R"({"news":"flash"})").ok());
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kText);
  EXPECT_EQ(event.data, R"({"news":"flash"})");
}

TEST(CoreTest, ListClientsShowsConnectionDetails) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  auto ws =
      WsClient::Connect(pushd.ws_port(), "/ws?user_id=frank", {{"User-Agent", "core-test/1.0"}});
  ASSERT_TRUE(ws);
  ws->ReadJson();
  ASSERT_TRUE(DoPush(*stub, "frank", "42").ok());
  ws->ReadJson();
  v1::ListClientsResponse list;
  ASSERT_TRUE(WaitFor([&] {
    list = DoList(*stub, "frank");
    return list.clients_size() == 1 && list.clients(0).messages_sent() == 1;
  }));
  const v1::Client& c = list.clients(0);
  EXPECT_EQ(c.user_id(), "frank");
  EXPECT_EQ(c.node_id(), "test-node");
  EXPECT_EQ(c.user_agent(), "core-test/1.0");
  EXPECT_EQ(c.remote_address().rfind("127.0.0.1:", 0), 0u) << c.remote_address();
  EXPECT_GT(c.connected_at().seconds(), 0);
  EXPECT_EQ(c.queued_bytes(), 0u);
  EXPECT_EQ(list.total(), 1u);
  EXPECT_TRUE(list.next_page_token().empty());
}

TEST(CoreTest, ListClientsPagesThroughEveryConnectionOnce) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 7; ++i) {
    clients.push_back(ConnectAs(pushd, "user" + std::to_string(i % 3)));
    ASSERT_TRUE(clients.back());
  }
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    grpc::Status status;
    auto page = DoList(*stub, "", 3, token, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(page.total(), 7u);
    EXPECT_LE(page.clients_size(), 3);
    for (const auto& c : page.clients()) EXPECT_TRUE(seen.insert(c.connection_id()).second);
    token = page.next_page_token();
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_EQ(seen.size(), 7u);
  EXPECT_EQ(pages, 3);

  auto filtered = DoList(*stub, "user1");
  EXPECT_EQ(filtered.total(), 2u);
  for (const auto& c : filtered.clients()) EXPECT_EQ(c.user_id(), "user1");
}

TEST(CoreTest, DeleteClientClosesWith1000AndReason) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  auto a = ConnectAs(pushd, "gina");
  auto b = ConnectAs(pushd, "gina");
  ASSERT_TRUE(a && b);
  v1::DeleteClientResponse res;
  ASSERT_TRUE(DoDelete(*stub, "gina", &res, "", false, "logged out").ok());
  EXPECT_EQ(res.closed(), 2u);
  for (auto* c : {a.get(), b.get()}) {
    WsEvent event = c->Read();
    ASSERT_EQ(event.kind, WsEvent::kClosed);
    EXPECT_EQ(event.close_code, 1000);
    EXPECT_EQ(event.close_reason, "logged out");
  }
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "gina").total() == 0; }));
  // Nobody left: NOT_FOUND with a message naming the user.
  grpc::Status again = DoDelete(*stub, "gina");
  EXPECT_EQ(again.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(again.error_message().find("gina"), std::string::npos);
}

TEST(CoreTest, DeleteClientCanCloseOneConnection) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  auto a = WsClient::Connect(pushd.ws_port(), "/ws?user_id=hank");
  auto b = ConnectAs(pushd, "hank");
  ASSERT_TRUE(a && b);
  std::string a_id = std::string(a->ReadJson().at("connection_id").as_string());
  v1::DeleteClientResponse res;
  ASSERT_TRUE(DoDelete(*stub, "hank", &res, a_id).ok());
  EXPECT_EQ(res.closed(), 1u);
  WsEvent event = a->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed);
  EXPECT_EQ(event.close_code, 1000);
  EXPECT_EQ(event.close_reason, "deleted");
  // The other tab still receives.
  ASSERT_TRUE(DoPush(*stub, "hank", "true").ok());
  EXPECT_EQ(b->ReadJson().at("data"), true);
  EXPECT_EQ(DoDelete(*stub, "hank", nullptr, "no-such-connection").error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST(CoreTest, HttpDeleteClientRouteOfTheOriginalService) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  auto ws = WsClient::Connect(pushd.ws_port(), "/getPushNews?userId=ivy");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub, "ivy").total() == 1; }));
  HttpResponse res = HttpRequest(pushd.ws_port(), "DELETE", "/deleteClient/ivy");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(json::parse(res.body), json::parse(R"({"closed":1})"));
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed);
  EXPECT_EQ(event.close_code, 1000);

  res = HttpRequest(pushd.ws_port(), "DELETE", "/deleteClient/ivy");
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(json::parse(res.body), json::parse(R"({"error":"client not found"})"));
}

TEST(CoreTest, ClientCloseAndTcpLossLeaveListClientsAtOnce) {
  PushdProcess pushd;
  auto stub = pushd.Stub();
  auto polite = ConnectAs(pushd, "jack");
  auto rude = RawClient::Connect(pushd.ws_port());
  ASSERT_TRUE(polite && rude);
  ASSERT_EQ(rude->Upgrade("/ws?user_id=jack"), 101);
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub, "jack").total() == 2; }));
  polite->Close();
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "jack").total() == 1; }));
  rude.reset();  // TCP close without a WebSocket close frame
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "jack").total() == 0; }));
}

TEST(CoreTest, HealthReadinessAndMetrics) {
  PushdProcess pushd;
  EXPECT_EQ(HttpRequest(pushd.ws_port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(HttpRequest(pushd.ws_port(), "GET", "/readyz").status, 200);
  auto stub = pushd.Stub();
  ASSERT_TRUE(DoPush(*stub, "kim", "1").ok());
  HttpResponse metrics = HttpRequest(pushd.ws_port(), "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("pushd_pushes_total{result=\"ok\"} 1"), std::string::npos)
      << metrics.body;
  HttpResponse page = HttpRequest(pushd.ws_port(), "GET", "/");
  EXPECT_EQ(page.status, 200);
  // The demo page loads the client library, which the edge serves too.
  EXPECT_NE(page.body.find("pushclient.js"), std::string::npos);
  EXPECT_EQ(HttpRequest(pushd.ws_port(), "GET", "/pushclient.js").status, 200);
  EXPECT_EQ(HttpRequest(pushd.ws_port(), "GET", "/nope").status, 404);
}

}  // namespace
}  // namespace push::testing
