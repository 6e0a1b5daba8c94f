// TLS on both listeners: wss:// and https:// on the edge port, gRPC over TLS, against a real
// pushd with a certificate made at runtime; and what must not happen: plain text or a stalled
// handshake on the TLS port disturbing anyone else.

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <csignal>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/temp_files.h"
#include "tests/testing/test_util.h"
#include "tests/testing/tls_cert.h"

namespace push::testing {
namespace {

namespace json = boost::json;
using std::chrono::steady_clock;

// A pushd with TLS on both ports and the files it was given.
struct TlsPushd {
  TestCertificate cert = MakeSelfSignedCertificate();
  TempDir dir;
  std::string cert_file = dir.Write("cert.pem", cert.cert_pem);
  std::string key_file = dir.Write("key.pem", cert.key_pem);
  PushdProcess pushd;

  explicit TlsPushd(std::vector<std::string> extra = {})
      : pushd(WithTls(std::move(extra), cert_file, key_file)) {}

  static std::vector<std::string> WithTls(std::vector<std::string> args, const std::string& cert,
                                          const std::string& key) {
    args.push_back("--tls_cert_file=" + cert);
    args.push_back("--tls_key_file=" + key);
    return args;
  }

  // A PushService stub over TLS that trusts only this server's certificate; `host` is the name
  // the certificate is checked against.
  std::unique_ptr<v1::PushService::Stub> Stub(const std::string& host = "localhost") const {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = cert.cert_pem;
    return v1::PushService::NewStub(grpc::CreateChannel(
        host + ":" + std::to_string(pushd.grpc_port()), grpc::SslCredentials(options)));
  }

  // Connects wss:// as `user` and consumes the welcome frame.
  std::unique_ptr<WsClient> Connect(const std::string& user) const {
    std::string error;
    auto ws = WsClient::ConnectTls(pushd.ws_port(), "/ws?user_id=" + user, cert.cert_pem, {},
                                   nullptr, &error);
    EXPECT_TRUE(ws) << "wss connect: " << error;
    if (!ws) return nullptr;
    json::value welcome = ws->ReadJson();
    EXPECT_EQ(welcome.at("type"), "welcome");
    return ws;
  }
};

// A Push over gRPC TLS arrives on `ws` within a bound well under the server's 10 s handshake
// timeout, so that a connection stalled on a handshake cannot have been waited for.
void ExpectPushArrivesQuickly(const TlsPushd& server, WsClient& ws, const std::string& user,
                              const std::string& data) {
  auto start = steady_clock::now();
  auto stub = server.Stub();
  v1::PushResponse res;
  grpc::Status status = DoPush(*stub, user, data, &res);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(res.delivered(), 1u);
  json::value frame = ws.ReadJson(std::chrono::milliseconds(5000));
  EXPECT_EQ(frame.at("data"), json::parse(data));
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(TlsTest, PushOverGrpcTlsReachesAWssClient) {
  TlsPushd server;
  ASSERT_TRUE(server.pushd.started());
  auto ws = server.Connect("alice");
  ASSERT_TRUE(ws);

  // The certificate names localhost and 127.0.0.1; both targets verify.
  for (const std::string host : {"localhost", "127.0.0.1"}) {
    auto stub = server.Stub(host);
    v1::PushResponse res;
    grpc::Status status =
        DoPush(*stub, "alice", R"({"over":"tls","host":")" + host + R"("})", &res);
    ASSERT_TRUE(status.ok()) << host << ": " << status.error_message();
    EXPECT_EQ(res.delivered(), 1u);
    json::value frame = ws->ReadJson();
    EXPECT_EQ(frame.at("type"), "message");
    EXPECT_EQ(frame.at("seq"), res.seq());
    EXPECT_EQ(frame.at("data").at("host"), host.c_str());
  }

  // ListClients over TLS sees the wss connection with its address.
  v1::ListClientsResponse list = DoList(*server.Stub(), "alice");
  ASSERT_EQ(list.clients_size(), 1);
  EXPECT_EQ(list.clients(0).remote_address().rfind("127.0.0.1:", 0), 0u);

  // DeleteClient closes the wss connection with 1000 and the reason, through TLS.
  ASSERT_TRUE(DoDelete(*server.Stub(), "alice", nullptr, "", false, "bye").ok());
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed) << event.data;
  EXPECT_EQ(event.close_code, 1000);
  EXPECT_EQ(event.close_reason, "bye");
  auto stub = server.Stub();
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "alice").total() == 0; }));
}

// Heartbeats over TLS go through each connection's strand (the send lane, where the timer's own
// thread writes a ping, is for plain connections): a wss client that reads answers them and
// stays, one that never reads is dropped at the pong timeout.
TEST(TlsTest, HeartbeatKeepsAReadingWssClientAndDropsASilentOne) {
  TlsPushd server({"--ping_interval=200ms", "--pong_timeout=300ms"});
  ASSERT_TRUE(server.pushd.started());
  auto steady = server.Connect("steady");
  auto silent = server.Connect("silent");  // never read again: Beast answers pings in reads
  ASSERT_TRUE(steady && silent);
  auto stub = server.Stub();

  // The steady client reads (answering every ping) for as long as the checks below take: a push
  // each interval keeps its reads returning, and a last push, "end", tells the reader to stop.
  // Both threads stop and are joined on every path.
  std::atomic<bool> stop{false};
  std::atomic<int> pushed{0};
  std::atomic<int> push_failures{0};
  std::atomic<int> received{0};
  std::string read_failure;
  std::thread pusher([&] {
    auto pusher_stub = server.Stub();
    for (int i = 1; i <= 200 && !stop.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // paces the pushes
      if (DoPush(*pusher_stub, "steady", std::to_string(i)).ok()) {
        ++pushed;
      } else {
        ++push_failures;
      }
    }
    if (!DoPush(*pusher_stub, "steady", R"("end")").ok()) ++push_failures;
  });
  std::thread reader([&] {
    for (int seq = 1; seq <= 201; ++seq) {
      WsEvent event = steady->Read(std::chrono::milliseconds(5000));
      if (event.kind != WsEvent::kText) {
        read_failure = "kind=" + std::to_string(event.kind) +
                       " close=" + std::to_string(event.close_code) + " " + event.data;
        return;
      }
      json::value frame = json::parse(event.data);
      if (frame.at("seq") != seq) {
        read_failure = "out of order: " + event.data;
        return;
      }
      if (frame.at("data") == "end") return;
      ++received;
    }
  });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& a;
    std::thread& b;
    ~Joiner() {
      stop = true;
      if (a.joinable()) a.join();
      if (b.joinable()) b.join();
    }
  } joiner{stop, pusher, reader};

  auto start = steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "silent").total() == 0; }));
  // Several pong timeouts have passed for a client that answered nothing: the steady one is still
  // there, still receiving.
  EXPECT_TRUE(WaitFor([&] { return received.load() >= 5; }));
  EXPECT_GE(steady_clock::now() - start, std::chrono::milliseconds(3 * 200 + 300));
  EXPECT_EQ(DoList(*stub, "steady").total(), 1u);
  HttpResponse metrics =
      HttpsRequest(server.pushd.ws_port(), server.cert.cert_pem, "GET", "/metrics");
  EXPECT_EQ(MetricValue(metrics.body, R"(pushd_disconnects_total{reason="pong_timeout"})"), 1u)
      << metrics.body;
  stop = true;
  pusher.join();
  reader.join();
  EXPECT_EQ(read_failure, "");
  EXPECT_EQ(push_failures.load(), 0);
  EXPECT_EQ(received.load(), pushed.load());
}

TEST(TlsTest, CompatRouteAndReplayWorkOverWss) {
  TlsPushd server;
  ASSERT_TRUE(server.pushd.started());
  auto stub = server.Stub();
  ASSERT_TRUE(DoPush(*stub, "bob", R"({"stored":1})").ok());
  std::string error;
  auto ws = WsClient::ConnectTls(server.pushd.ws_port(), "/getPushNews?userId=bob",
                                 server.cert.cert_pem, {}, nullptr, &error);
  ASSERT_TRUE(ws) << error;
  // Compatibility mode: the bare pushed data, replayed from the stream, then live.
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kText) << event.data;
  EXPECT_EQ(json::parse(event.data), json::parse(R"({"stored":1})"));
  ASSERT_TRUE(DoPush(*stub, "bob", R"({"live":2})").ok());
  event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kText) << event.data;
  EXPECT_EQ(json::parse(event.data), json::parse(R"({"live":2})"));
  // A client-initiated close completes its handshake and the server lets the connection go.
  ws->Close(1000);
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "bob").total() == 0; }));
}

TEST(TlsTest, HttpRoutesAnswerOverHttps) {
  TlsPushd server;
  ASSERT_TRUE(server.pushd.started());
  const int port = server.pushd.ws_port();
  const std::string& ca = server.cert.cert_pem;

  HttpResponse res = HttpsRequest(port, ca, "GET", "/healthz");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.body, "ok\n");
  EXPECT_EQ(HttpsRequest(port, ca, "GET", "/readyz").status, 200);
  res = HttpsRequest(port, ca, "GET", "/metrics");
  EXPECT_EQ(res.status, 200);
  EXPECT_NE(res.body.find("pushd_connections"), std::string::npos);
  res = HttpsRequest(port, ca, "GET", "/");
  EXPECT_EQ(res.status, 200);
  EXPECT_NE(res.headers["content-type"].find("text/html"), std::string::npos);
  EXPECT_EQ(HttpsRequest(port, ca, "GET", "/nope").status, 404);

  res = HttpsRequest(port, ca, "DELETE", "/deleteClient/carol");
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(res.body, R"({"error":"client not found"})");
  auto ws = server.Connect("carol");
  ASSERT_TRUE(ws);
  res = HttpsRequest(port, ca, "DELETE", "/deleteClient/carol");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.body, R"({"closed":1})");
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed) << event.data;
  EXPECT_EQ(event.close_code, 1000);
}

TEST(TlsTest, ClientsThatDoNotTrustTheCertificateOrSpeakPlainTextAreRefused) {
  TlsPushd server;
  ASSERT_TRUE(server.pushd.started());
  TestCertificate stranger = MakeSelfSignedCertificate();

  // gRPC: plain text, or TLS trusting another certificate, cannot call.
  auto plain = server.pushd.Stub();
  grpc::Status status = DoPush(*plain, "dave", "1");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = stranger.cert_pem;
  auto untrusting = v1::PushService::NewStub(grpc::CreateChannel(
      "localhost:" + std::to_string(server.pushd.grpc_port()), grpc::SslCredentials(options)));
  status = DoPush(*untrusting, "dave", "1");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();

  // Edge: plain HTTP gets no answer, a TLS client that does not trust the server stops at the
  // handshake.
  EXPECT_EQ(HttpRequest(server.pushd.ws_port(), "GET", "/healthz").status, 0);
  EXPECT_EQ(HttpsRequest(server.pushd.ws_port(), stranger.cert_pem, "GET", "/healthz").status, 0);
  std::string error;
  EXPECT_FALSE(WsClient::ConnectTls(server.pushd.ws_port(), "/ws?user_id=dave", stranger.cert_pem,
                                    {}, nullptr, &error));
  EXPECT_FALSE(error.empty());

  // Each refused handshake is counted.
  HttpResponse metrics =
      HttpsRequest(server.pushd.ws_port(), server.cert.cert_pem, "GET", "/metrics");
  EXPECT_EQ(metrics.body.find("pushd_tls_handshake_failures_total 0\n"), std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("pushd_tls_handshake_failures_total"), std::string::npos);
}

TEST(TlsTest, PlainTextOnTheTlsPortFailsCleanlyWithoutStallingAWssClient) {
  // One I/O thread: anything that blocked it would stall every connection.
  TlsPushd server({"--edge_threads=1"});
  ASSERT_TRUE(server.pushd.started());
  auto healthy = server.Connect("erin");
  ASSERT_TRUE(healthy);

  // A plain WebSocket upgrade, plain HTTP and binary noise: each connection is closed without an
  // HTTP answer (there is no TLS to answer in).
  for (const std::string& bytes :
       {std::string("GET /ws?user_id=erin HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"),
        std::string("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("\x16\x03\x01\x00\x05\xff\xff\xff\xff\xff\x00\x00\x00garbage", 18),
        std::string(4096, '\xff')}) {
    auto raw = RawClient::Connect(server.pushd.ws_port());
    ASSERT_TRUE(raw);
    ASSERT_TRUE(raw->SendBytes(bytes));
    // Whatever comes back (at most a TLS alert), the server closes the connection.
    while (raw->ReadFrame(std::chrono::milliseconds(5000))) {
    }
    EXPECT_TRUE(raw->eof()) << "the server kept a plain-text connection open";
  }
  ExpectPushArrivesQuickly(server, *healthy, "erin", R"({"after":"plain text"})");
  auto stub = server.Stub();
  EXPECT_EQ(DoList(*stub, "erin").total(), 1u);
  EXPECT_EQ(HttpsRequest(server.pushd.ws_port(), server.cert.cert_pem, "GET", "/healthz").status,
            200);
}

TEST(TlsTest, StalledHandshakesDoNotStallOthersAndAreDroppedAtTheTimeout) {
  TlsPushd server({"--edge_threads=1"});
  ASSERT_TRUE(server.pushd.started());

  // Connections that open TCP and then say nothing, or stop halfway through a ClientHello.
  std::vector<std::unique_ptr<RawClient>> stalled;
  for (int i = 0; i < 20; ++i) {
    stalled.push_back(RawClient::Connect(server.pushd.ws_port()));
    ASSERT_TRUE(stalled.back());
    if (i % 2 == 1) {
      ASSERT_TRUE(stalled.back()->SendBytes(std::string("\x16\x03\x01\x02\x00", 5)));
    }
  }
  // Meanwhile new clients connect over TLS and get their messages at once.
  auto start = steady_clock::now();
  auto ws = server.Connect("frank");
  ASSERT_TRUE(ws);
  ExpectPushArrivesQuickly(server, *ws, "frank", R"({"while":"stalled"})");
  EXPECT_EQ(HttpsRequest(server.pushd.ws_port(), server.cert.cert_pem, "GET", "/healthz").status,
            200);
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(5));

  // The server gives up on each stalled handshake after its 10 s handshake timeout.
  for (auto& raw : stalled) {
    while (raw->ReadFrame(std::chrono::seconds(20))) {
    }
    EXPECT_TRUE(raw->eof()) << "a stalled handshake was kept past the timeout";
  }
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(25));
  // The connection that completed its handshake is unaffected.
  ExpectPushArrivesQuickly(server, *ws, "frank", R"({"after":"timeouts"})");
}

TEST(TlsTest, ShutdownClosesWssClientsWith1001) {
  TlsPushd server;
  ASSERT_TRUE(server.pushd.started());
  auto ws = server.Connect("gina");
  ASSERT_TRUE(ws);
  server.pushd.Signal(SIGTERM);
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed) << event.data;
  EXPECT_EQ(event.close_code, 1001);
  EXPECT_EQ(server.pushd.Wait(15000), 0);
}

TEST(TlsTest, PushctlTalksTlsWithTheCaFile) {
  TlsPushd server;
  ASSERT_TRUE(server.pushd.started());
  auto ws = server.Connect("hank");
  ASSERT_TRUE(ws);
  std::string addr = "localhost:" + std::to_string(server.pushd.grpc_port());
  RunResult r =
      RunCommand(PushctlBinary(), {"push", "--addr", addr, "--tls_ca_file", server.cert_file,
                                   "--user", "hank", "--data", R"({"from":"pushctl"})"});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("delivered=1"), std::string::npos) << r.out;
  EXPECT_EQ(ws->ReadJson().at("data"), json::parse(R"({"from":"pushctl"})"));

  r = RunCommand(PushctlBinary(), {"list", "--addr", addr, "--tls_ca_file", server.cert_file});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("hank"), std::string::npos) << r.out;

  // Without TLS it cannot talk to a TLS server, and a bad CA file is a usage error.
  r = RunCommand(PushctlBinary(), {"list", "--addr", addr, "--timeout", "3"});
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_NE(r.err.find("UNAVAILABLE"), std::string::npos) << r.err;
  r = RunCommand(PushctlBinary(), {"list", "--addr", addr, "--tls_ca_file", server.key_file});
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_NE(r.err.find("tls_ca_file"), std::string::npos) << r.err;
}

// ---- Flags -----------------------------------------------------------------------------------

constexpr int kBadFlagTimeoutMs = 10000;

void ExpectExit2Naming(const std::vector<std::string>& args,
                       const std::vector<std::string>& words) {
  RunResult r = RunCommand(PushdBinary(), args, {}, kBadFlagTimeoutMs);
  EXPECT_EQ(r.exit_status, 2) << r.err;
  // One line on stderr that says what is wrong.
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  for (const std::string& word : words) {
    EXPECT_NE(r.err.find(word), std::string::npos) << "missing '" << word << "' in: " << r.err;
  }
}

TEST(TlsFlagsTest, OneFileAloneExits2NamingTheMissingFlag) {
  TestCertificate cert = MakeSelfSignedCertificate();
  TempDir dir;
  std::string cert_file = dir.Write("cert.pem", cert.cert_pem);
  std::string key_file = dir.Write("key.pem", cert.key_pem);
  ExpectExit2Naming(
      {"--ws_listen=127.0.0.1:0", "--grpc_listen=127.0.0.1:0", "--tls_cert_file=" + cert_file},
      {"--tls_key_file"});
  ExpectExit2Naming(
      {"--ws_listen=127.0.0.1:0", "--grpc_listen=127.0.0.1:0", "--tls_key_file=" + key_file},
      {"--tls_cert_file"});
}

TEST(TlsFlagsTest, UnreadableOrInvalidFilesExit2WithAClearMessage) {
  TestCertificate cert = MakeSelfSignedCertificate();
  TestCertificate other = MakeSelfSignedCertificate();
  TempDir dir;
  std::string cert_file = dir.Write("cert.pem", cert.cert_pem);
  std::string key_file = dir.Write("key.pem", cert.key_pem);
  std::string other_key = dir.Write("other-key.pem", other.key_pem);
  std::string garbage = dir.Write("garbage.pem", "not a certificate\n");
  std::string empty = dir.Write("empty.pem", "");
  std::string encrypted = dir.Write("encrypted-key.pem", EncryptedKeyPem(cert.key_pem, "secret"));
  std::vector<std::string> base = {"--ws_listen=127.0.0.1:0", "--grpc_listen=127.0.0.1:0"};
  auto with = [&](const std::string& c, const std::string& k) {
    std::vector<std::string> args = base;
    args.push_back("--tls_cert_file=" + c);
    args.push_back("--tls_key_file=" + k);
    return args;
  };
  ExpectExit2Naming(with(dir.path() + "/missing.pem", key_file),
                    {"--tls_cert_file", "cannot read"});
  ExpectExit2Naming(with(cert_file, dir.path() + "/missing.pem"),
                    {"--tls_key_file", "cannot read"});
  ExpectExit2Naming(with(dir.path(), key_file), {"--tls_cert_file", "cannot read"});
  ExpectExit2Naming(with(garbage, key_file), {"--tls_cert_file", "no PEM certificate"});
  ExpectExit2Naming(with(empty, key_file), {"--tls_cert_file", "empty"});
  ExpectExit2Naming(with(cert_file, garbage), {"--tls_key_file", "no usable PEM private key"});
  // A passphrase-protected key is refused, never prompted for.
  ExpectExit2Naming(with(cert_file, encrypted), {"--tls_key_file", "encrypted keys"});
  // Files swapped, and a key that belongs to another certificate.
  ExpectExit2Naming(with(key_file, cert_file), {"--tls_cert_file", "no PEM certificate"});
  ExpectExit2Naming(with(cert_file, other_key), {"--tls_key_file", "is not the key of"});
}

}  // namespace
}  // namespace push::testing
