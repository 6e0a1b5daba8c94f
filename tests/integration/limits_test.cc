// The edge's limits against a real pushd (README, "Limits"): each refusal has its documented
// answer, is counted in pushd_limit_hits_total and logged once per interval, and hostile or
// broken clients (garbage bytes, half-open upgrades, slowloris, clients that never read) cost
// the other clients nothing.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/config/config.h"
#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"
#include "tests/testing/text.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// A plain TCP connection to the edge port for clients that misbehave below HTTP.
class TcpSocket {
 public:
  explicit TcpSocket(int port, int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    if (receive_buffer > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    }
    // A send never blocks a test for long, whatever the server does.
    timeval send_timeout{2, 0};
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~TcpSocket() {
    if (fd_ >= 0) close(fd_);
  }
  TcpSocket(const TcpSocket&) = delete;
  TcpSocket& operator=(const TcpSocket&) = delete;

  bool connected() const { return fd_ >= 0; }

  // Sends all of `bytes`; false when the server closed or the send timed out.
  bool Send(const std::string& bytes) {
    size_t sent = 0;
    while (fd_ >= 0 && sent < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return fd_ >= 0;
  }

  // Reads (and keeps) what arrives until the server closes the connection or `timeout` passes;
  // true when it closed.
  bool WaitClosed(milliseconds timeout) {
    if (closed_) return true;
    auto deadline = steady_clock::now() + timeout;
    while (fd_ >= 0) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      int ready = poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
      if (ready <= 0) return false;
      char chunk[4096];
      ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) {
        closed_ = true;
        return true;
      }
      received_.append(chunk, static_cast<size_t>(n));
    }
    return false;
  }

  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool closed_ = false;
  std::string received_;
};

// pushd_limit_hits_total{limit="<label>"}, or -1 when /metrics does not answer or lacks it.
int64_t LimitHits(int port, const std::string& label) {
  HttpResponse res = HttpRequest(port, "GET", "/metrics");
  std::string key = "pushd_limit_hits_total{limit=\"" + label + "\"} ";
  size_t pos = res.body.find(key);
  if (res.status != 200 || pos == std::string::npos) return -1;
  return std::stoll(res.body.substr(pos + key.size()));
}

// LimitHits once it reaches `expected` (or after 5 s): a hit may be counted just after the client
// saw its effect (Beast closes a timed-out socket before the read handler runs).
int64_t SettledLimitHits(int port, const std::string& label, int64_t expected) {
  int64_t hits = -1;
  WaitFor([&] { return (hits = LimitHits(port, label)) >= expected; }, milliseconds(5000));
  return hits;
}

int CountLines(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += Contains(line, needle);
  return n;
}

// Pushes `data` to `user` and checks that `ws` receives exactly it within `timeout`.
void ExpectDelivered(const PushdProcess& pushd, WsClient& ws, const std::string& user,
                     const std::string& data, milliseconds timeout = kDefaultTimeout) {
  auto stub = pushd.Stub();
  grpc::Status s = DoPush(*stub, user, data);
  ASSERT_TRUE(s.ok()) << s.error_message();
  json::value frame = ws.ReadJson(timeout);
  ASSERT_TRUE(frame.is_object());
  EXPECT_EQ(frame.at("type"), "message");
  EXPECT_EQ(frame.at("data"), json::parse(data));
}

double SecondsSince(steady_clock::time_point start) {
  return std::chrono::duration<double>(steady_clock::now() - start).count();
}

// ---- Connection limits -----------------------------------------------------------------------

TEST(LimitsTest, PerUserLimitRefusesTheNextUpgradeWith429UntilOneCloses) {
  PushdProcess pushd({"--max_connections_per_user=3"});
  ASSERT_TRUE(pushd.started());
  const int port = pushd.ws_port();
  std::vector<std::unique_ptr<WsClient>> tabs;
  for (int i = 0; i < 3; ++i) {
    tabs.push_back(ConnectUser(port, "alice"));
    ASSERT_TRUE(tabs.back());
  }
  // The fourth, on either route, is refused before the upgrade with 429 and a reason.
  int status = 0;
  EXPECT_FALSE(WsClient::Connect(port, "/ws?user_id=alice", {}, &status));
  EXPECT_EQ(status, 429);
  EXPECT_FALSE(WsClient::Connect(port, "/getPushNews?userId=alice", {}, &status));
  EXPECT_EQ(status, 429);
  HttpResponse res = HttpRequest(port, "GET", "/ws?user_id=alice", UpgradeHeaders());
  EXPECT_EQ(res.status, 429);
  EXPECT_TRUE(Contains(res.body, "at most 3")) << res.body;

  // Other users are not affected, and the three open tabs keep receiving.
  auto bob = ConnectUser(port, "bob");
  ASSERT_TRUE(bob);
  auto stub = pushd.Stub();
  v1::PushResponse pushed;
  ASSERT_TRUE(DoPush(*stub, "alice", R"({"n":1})", &pushed).ok());
  EXPECT_EQ(pushed.delivered(), 3u);
  for (auto& tab : tabs) EXPECT_EQ(tab->ReadJson().at("data"), json::parse(R"({"n":1})"));
  ExpectDelivered(pushd, *bob, "bob", "2");

  // Closing one tab frees its slot.
  tabs[0]->Close();
  tabs.erase(tabs.begin());
  std::unique_ptr<WsClient> again;
  EXPECT_TRUE(WaitFor([&] {
    again = WsClient::Connect(port, "/ws?user_id=alice");
    return again != nullptr;
  }));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->ReadJson().at("type"), "welcome");
  EXPECT_EQ(DoList(*stub, "alice").total(), 3u);
  EXPECT_FALSE(WsClient::Connect(port, "/ws?user_id=alice", {}, &status));
  EXPECT_EQ(status, 429);
  EXPECT_GE(LimitHits(port, "per_user"), 4);
}

TEST(LimitsTest, ProcessLimitRefusesUpgradesWith503AndStillAnswersHttp) {
  PushdProcess pushd({"--max_connections=2"});
  ASSERT_TRUE(pushd.started());
  const int port = pushd.ws_port();
  auto a = ConnectUser(port, "ann");
  auto b = ConnectUser(port, "ben");
  ASSERT_TRUE(a && b);
  int status = 0;
  EXPECT_FALSE(WsClient::Connect(port, "/ws?user_id=cid", {}, &status));
  EXPECT_EQ(status, 503);
  HttpResponse res = HttpRequest(port, "GET", "/ws?user_id=cid", UpgradeHeaders());
  EXPECT_EQ(res.status, 503);
  EXPECT_TRUE(Contains(res.body, "max_connections")) << res.body;
  // Probes and scrapes still get through while the WebSockets are at the limit.
  EXPECT_EQ(HttpRequest(port, "GET", "/healthz").status, 200);
  EXPECT_EQ(HttpRequest(port, "GET", "/readyz").status, 200);
  EXPECT_EQ(LimitHits(port, "connections"), 2);
  ExpectDelivered(pushd, *a, "ann", R"("still here")");

  b->Close();
  std::unique_ptr<WsClient> c;
  EXPECT_TRUE(WaitFor([&] {
    c = WsClient::Connect(port, "/ws?user_id=cid");
    return c != nullptr;
  }));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->ReadJson().at("type"), "welcome");
  ExpectDelivered(pushd, *c, "cid", "3");
}

TEST(LimitsTest, SocketsBeyondTheLimitAndTheRoomForHandshakesAreClosedAtOnce) {
  constexpr uint32_t kMax = 2;
  PushdProcess pushd({"--max_connections=2", "--handshake_timeout=60s"});
  ASSERT_TRUE(pushd.started());
  const int port = pushd.ws_port();
  auto a = ConnectUser(port, "ann");
  auto b = ConnectUser(port, "ben");
  ASSERT_TRUE(a && b);

  // Idle sockets that never send a byte: the process keeps HandshakeRoom of them beside its
  // WebSockets and closes the rest as they are accepted, instead of letting them pile up.
  const int room = static_cast<int>(HandshakeRoom(kMax));
  const int extra = 6;
  std::vector<std::unique_ptr<TcpSocket>> idle;
  for (int i = 0; i < room + extra; ++i) {
    idle.push_back(std::make_unique<TcpSocket>(port));
    ASSERT_TRUE(idle.back()->connected()) << i;
  }
  auto count_closed = [&] {
    int closed = 0;
    for (auto& s : idle) closed += s->WaitClosed(milliseconds(1));
    return closed;
  };
  EXPECT_TRUE(WaitFor([&] { return count_closed() >= extra; }, milliseconds(5000)));
  // Exactly the excess went; the others wait for their requests (60 s handshake timeout).
  EXPECT_FALSE(WaitFor([&] { return count_closed() > extra; }, milliseconds(500)));
  EXPECT_EQ(count_closed(), extra);

  // The open WebSockets are untouched.
  ExpectDelivered(pushd, *a, "ann", "1");
  ExpectDelivered(pushd, *b, "ben", "2");
  idle.clear();
  // Once the idle sockets are gone, HTTP is answered again and the count is there.
  EXPECT_EQ(SettledLimitHits(port, "sockets", extra), extra);
}

// ---- Requests --------------------------------------------------------------------------------

TEST(LimitsTest, UpgradeRequestOverMaxRequestHeaderBytesGets431) {
  PushdProcess pushd({"--max_request_header_bytes=2048"});
  ASSERT_TRUE(pushd.started());
  const int port = pushd.ws_port();
  auto healthy = ConnectUser(port, "erin");
  ASSERT_TRUE(healthy);

  auto headers = UpgradeHeaders();
  headers["Cookie"] = "session=" + std::string(3000, 'c');
  HttpResponse res = HttpRequest(port, "GET", "/ws?user_id=big", headers);
  EXPECT_EQ(res.status, 431);
  EXPECT_EQ(LimitHits(port, "request_header_bytes"), 1);

  // Under the limit, the same upgrade goes through.
  auto raw = RawClient::Connect(port);
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->Upgrade("/ws?user_id=big", {{"Cookie", "session=" + std::string(1000, 'c')}}),
            101);
  ExpectDelivered(pushd, *healthy, "erin", R"("fine")");
  EXPECT_EQ(LimitHits(port, "request_header_bytes"), 1);
}

TEST(LimitsTest, HandshakeTimeoutClosesClientsThatNeverFinishTheirRequest) {
  PushdProcess pushd({"--handshake_timeout=1s"});
  ASSERT_TRUE(pushd.started());
  const int port = pushd.ws_port();
  auto start = steady_clock::now();
  TcpSocket silent(port);
  TcpSocket first_line(port);
  TcpSocket no_blank_line(port);
  ASSERT_TRUE(silent.connected() && first_line.connected() && no_blank_line.connected());
  ASSERT_TRUE(first_line.Send("GET /ws?user_id=half HTTP/1.1\r\n"));
  ASSERT_TRUE(no_blank_line.Send(
      "GET /ws?user_id=half HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n"));
  for (TcpSocket* s : {&silent, &first_line, &no_blank_line}) {
    EXPECT_TRUE(s->WaitClosed(milliseconds(5000)));
    EXPECT_EQ(s->received(), "");  // closed without an answer
  }
  double elapsed = SecondsSince(start);
  EXPECT_GE(elapsed, 0.9);
  EXPECT_LT(elapsed, 3.0);
  EXPECT_EQ(SettledLimitHits(port, "handshake_timeout", 3), 3);
  EXPECT_EQ(DoList(*pushd.Stub()).total(), 0u);

  // A keep-alive connection idle after a served request is closed at the same timeout but is
  // no limit hit.
  TcpSocket keep_alive(port);
  ASSERT_TRUE(keep_alive.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  EXPECT_TRUE(keep_alive.WaitClosed(milliseconds(5000)));
  EXPECT_EQ(keep_alive.received().rfind("HTTP/1.1 200", 0), 0u) << keep_alive.received();
  EXPECT_EQ(LimitHits(port, "handshake_timeout"), 3);
}

TEST(LimitsTest, SlowlorisIsCutAtTheDeadlineWhileANormalClientConnectsAndReceives) {
  // One I/O thread: anything that blocked on the slow client would stall everyone.
  PushdProcess pushd({"--handshake_timeout=2s", "--edge_threads=1"});
  ASSERT_TRUE(pushd.started());
  const int port = pushd.ws_port();
  const std::string request =
      "GET /ws?user_id=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\nX-Padding: " +
      std::string(200, 'p') + "\r\n\r\n";

  std::atomic<double> cut_after{-1};
  std::atomic<size_t> trickled{0};
  std::thread slowloris([&] {
    // Taken before the connect: the server's deadline runs from its accept, which comes after,
    // while an instant taken after the connect returned may already be late by any delay in
    // scheduling this thread (then the cut would look early).
    auto start = steady_clock::now();
    TcpSocket s(port);
    if (!s.connected()) return;
    // One byte per 100 ms: the whole request would take 40 s.
    for (size_t i = 0; i < request.size(); ++i) {
      if (s.WaitClosed(milliseconds(100)) || !s.Send(request.substr(i, 1))) {
        cut_after = SecondsSince(start);
        return;
      }
      trickled = i + 1;
    }
  });

  // Meanwhile a normal client connects and gets a push, promptly.
  auto connect_start = steady_clock::now();
  auto normal = ConnectUser(port, "norma");
  ASSERT_TRUE(normal);
  ExpectDelivered(pushd, *normal, "norma", R"({"while":"slowloris"})", milliseconds(1000));
  EXPECT_LT(SecondsSince(connect_start), 1.5);

  slowloris.join();
  EXPECT_GE(cut_after.load(), 1.8);
  EXPECT_LT(cut_after.load(), 4.0);
  EXPECT_GE(trickled.load(), 10u);  // it did keep sending: the deadline is not an idle timer
  EXPECT_LT(trickled.load(), request.size());
  ExpectDelivered(pushd, *normal, "norma", "2");
  EXPECT_EQ(SettledLimitHits(port, "handshake_timeout", 1), 1);
}

// ---- Hostile bytes ---------------------------------------------------------------------------

TEST(LimitsTest, GarbageHalfOpenUpgradesAndNonReadingClientsDoNotStallOthers) {
  PushdProcess pushd({"--handshake_timeout=3s", "--edge_threads=1", "--send_queue_bytes=65536"});
  ASSERT_TRUE(pushd.started());
  const int port = pushd.ws_port();
  auto stub = pushd.Stub();

  // Random binary: answered 400 (or cut) and closed.
  std::mt19937 rng(5);
  std::vector<std::unique_ptr<TcpSocket>> garbage;
  for (int i = 0; i < 4; ++i) {
    std::string bytes(64 * 1024, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    garbage.push_back(std::make_unique<TcpSocket>(port));
    garbage.back()->Send(bytes);  // the server may close before it has all of it
  }
  // Half-open upgrades that stop after the request line.
  std::vector<std::unique_ptr<TcpSocket>> half_open;
  for (int i = 0; i < 4; ++i) {
    half_open.push_back(std::make_unique<TcpSocket>(port));
    ASSERT_TRUE(half_open.back()->Send("GET /ws?user_id=half HTTP/1.1\r\n"));
  }
  // A WebSocket that never reads, with pushes backing up towards it...
  auto deaf = RawClient::Connect(port);
  ASSERT_TRUE(deaf);
  deaf->SetReceiveBuffer(4096);
  ASSERT_EQ(deaf->Upgrade("/ws?user_id=deaf"), 101);
  // ...and an HTTP client that pipelines requests and never reads the answers.
  TcpSocket pipeliner(port, 4096);
  std::string requests;
  for (int i = 0; i < 300; ++i) requests += "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  pipeliner.Send(requests);
  std::string big(8002, 'x');  // a JSON string of 8000 x
  big.front() = big.back() = '"';
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(DoPush(*stub, "deaf", big).ok());

  // A normal client connects and every push reaches it promptly.
  auto start = steady_clock::now();
  auto normal = ConnectUser(port, "norma");
  ASSERT_TRUE(normal);
  EXPECT_LT(SecondsSince(start), 1.5);
  for (int i = 0; i < 20; ++i) {
    ExpectDelivered(pushd, *normal, "norma", std::to_string(i), milliseconds(1000));
  }
  EXPECT_EQ(HttpRequest(port, "GET", "/healthz").status, 200);

  // The garbage got its 400s, the half-open upgrades their timeout.
  for (auto& s : garbage) {
    EXPECT_TRUE(s->WaitClosed(milliseconds(5000)));
    if (!s->received().empty()) {
      EXPECT_EQ(s->received().rfind("HTTP/1.1 400", 0), 0u);
    }
  }
  for (auto& s : half_open) EXPECT_TRUE(s->WaitClosed(milliseconds(6000)));
  EXPECT_EQ(SettledLimitHits(port, "handshake_timeout", 4), 4);
  ExpectDelivered(pushd, *normal, "norma", R"("after all of it")", milliseconds(1000));
}

// Many slow consumers together: each stays under --send_queue_bytes, but their sum passes
// --max_queued_bytes, so the largest backlogs are closed with 4008 (counted as queued_bytes)
// until the total is back under three quarters of the bound, while a reading client goes on
// undisturbed.
TEST(LimitsTest, ProcessWideQueueBoundClosesTheLargestBacklogsFirst) {
  constexpr uint64_t kBound = 1 << 20;
  PushdProcess pushd({"--send_queue_bytes=1048576", "--max_queued_bytes=1048576"});
  ASSERT_TRUE(pushd.started());
  const int port = pushd.ws_port();
  auto stub = pushd.Stub();
  constexpr int kDeaf = 8;
  std::vector<std::unique_ptr<RawClient>> deaf;
  for (int i = 0; i < kDeaf; ++i) {
    deaf.push_back(RawClient::Connect(port));
    ASSERT_TRUE(deaf.back());
    deaf.back()->SetReceiveBuffer(4096);
    ASSERT_EQ(deaf.back()->Upgrade("/ws?user_id=deaf" + std::to_string(i)), 101);
  }
  auto reader = ConnectUser(port, "reader");
  ASSERT_TRUE(reader);
  std::string big(16002, 'x');  // a JSON string of 16,000 x
  big.front() = big.back() = '"';
  auto push_to = [&](int i) { return DoPush(*stub, "deaf" + std::to_string(i), big).ok(); };
  auto backlogs = [&] {
    std::map<std::string, uint64_t> queued;
    v1::ListClientsResponse list = DoList(*stub);
    for (const auto& c : list.clients()) queued[c.user_id()] = c.queued_bytes();
    return queued;
  };
  // 1. Round robin until the kernel's buffers are full and every deaf connection has a backlog
  // of its own (the kernel takes a few MB per socket first).
  int rounds = 0;
  for (bool all = false; !all && rounds < 1000; ++rounds) {
    for (int i = 0; i < kDeaf; ++i) ASSERT_TRUE(push_to(i));
    auto queued = backlogs();
    all = std::all_of(deaf.begin(), deaf.end(), [&, i = 0](const auto&) mutable {
      return queued["deaf" + std::to_string(i++)] > 0;
    });
  }
  auto before = backlogs();
  uint64_t total = 0;
  for (const auto& [user, q] : before) total += q;
  ASSERT_LT(total, kBound) << "after " << rounds << " rounds";
  EXPECT_EQ(LimitHits(port, "queued_bytes"), 0);
  // 2. deaf0 gets 320 KB more: by far the largest backlog.
  for (int n = 0; n < 20; ++n) ASSERT_TRUE(push_to(0));
  // 3. The others, round robin, until the bound is passed.
  for (int r = 0; r < 200 && LimitHits(port, "queued_bytes") < 1; ++r) {
    for (int i = 1; i < kDeaf; ++i) ASSERT_TRUE(push_to(i));
    ExpectDelivered(pushd, *reader, "reader", std::to_string(r));
  }
  ASSERT_GE(SettledLimitHits(port, "queued_bytes", 1), 1);
  // The largest backlog went first, and not everyone went: the others stay listed.
  std::set<std::string> left;
  uint64_t queued = 0;
  ASSERT_TRUE(WaitFor([&] {
    left.clear();
    queued = 0;
    v1::ListClientsResponse list = DoList(*stub);
    for (const auto& c : list.clients()) {
      left.insert(c.user_id());
      queued += c.queued_bytes();
    }
    return left.count("deaf0") == 0;
  }));
  EXPECT_TRUE(left.count("reader"));
  EXPECT_GE(left.size(), 2u) << "only the largest backlogs are closed";
  EXPECT_LE(queued, kBound);
  // The reader never noticed.
  ExpectDelivered(pushd, *reader, "reader", R"("still here")");
}

// ---- Counting and logging --------------------------------------------------------------------

TEST(LimitsTest, HitsAreCountedAndLoggedInOneLinePerIntervalNotOnePerEvent) {
  PushdOptions options;
  options.capture_stderr = true;
  PushdProcess pushd({"--max_connections_per_user=1"}, options);
  ASSERT_TRUE(pushd.started());
  const int port = pushd.ws_port();
  auto alice = ConnectUser(port, "alice");
  ASSERT_TRUE(alice);
  constexpr int kRefused = 25;
  for (int i = 0; i < kRefused; ++i) {
    int status = 0;
    EXPECT_FALSE(WsClient::Connect(port, "/ws?user_id=alice", {}, &status));
    EXPECT_EQ(status, 429);
  }
  // A frame over 4096 bytes: 1009, counted as frame_bytes.
  auto raw = RawClient::Connect(port);
  ASSERT_TRUE(raw);
  ASSERT_EQ(raw->Upgrade("/ws?user_id=frank"), 101);
  ASSERT_TRUE(raw->SendBytes(RawClient::EncodeFrame(0x1, std::string(5000, 'a'))));
  std::optional<RawClient::Frame> close;
  for (int i = 0; i < 10 && !(close && close->opcode == 0x8); ++i) close = raw->ReadFrame();
  ASSERT_TRUE(close && close->opcode == 0x8);
  EXPECT_EQ(close->close_code(), 1009);

  EXPECT_EQ(LimitHits(port, "per_user"), kRefused);
  EXPECT_EQ(SettledLimitHits(port, "frame_bytes", 1), 1);
  for (const char* label :
       {"connections", "sockets", "open_files", "request_header_bytes", "handshake_timeout"}) {
    EXPECT_EQ(LimitHits(port, label), 0) << label;
  }
  // One line for the first refusal; the others are held back for the next summary.
  EXPECT_TRUE(WaitFor([&] { return CountLines(pushd.Stderr(), "limit frame_bytes:") == 1; }));
  std::string log = pushd.Stderr();
  EXPECT_EQ(CountLines(log, "limit per_user:"), 1) << log;
  // (Not a bare "429": connection ids and ports in other lines may contain those digits.)
  EXPECT_EQ(CountLines(log, "refused with 429"), 1) << log;
  // The summary of the other refusals comes once the 10 s interval has passed.
  EXPECT_TRUE(WaitFor([&] { return CountLines(pushd.Stderr(), "limit per_user:") == 2; },
                      milliseconds(15000)));
  log = pushd.Stderr();
  EXPECT_TRUE(Contains(log, "limit per_user: " + std::to_string(kRefused - 1) + " upgrade(s)"))
      << log;
  EXPECT_EQ(CountLines(log, "limit per_user:"), 2) << log;
  ExpectDelivered(pushd, *alice, "alice", "1");
}

// With too few descriptors for its --max_connections, accept fails with EMFILE while the failing
// connections wait in the listen queue: the accept loop must back off, not spin, and log once.
TEST(LimitsTest, AcceptBacksOffWithoutSpinningWhenDescriptorsRunOut) {
  PushdOptions options;
  options.capture_stderr = true;
  options.open_files_limit = 128;
  PushdProcess pushd({"--max_connections=10000", "--edge_threads=1", "--handshake_timeout=60s"},
                     options);
  ASSERT_TRUE(pushd.started()) << pushd.Stderr();
  const int port = pushd.ws_port();
  EXPECT_TRUE(Contains(pushd.Stderr(), "--max_connections=10000 is more than")) << pushd.Stderr();

  std::vector<std::unique_ptr<TcpSocket>> idle;
  for (int i = 0; i < 160; ++i) {
    idle.push_back(std::make_unique<TcpSocket>(port));
    ASSERT_TRUE(idle.back()->connected()) << i;
  }
  ASSERT_TRUE(WaitFor([&] { return CountLines(pushd.Stderr(), "limit open_files:") >= 1; }))
      << pushd.Stderr();

  // CPU time of pushd over one second: a spinning accept loop would take most of it.
  auto cpu_seconds = [&] {
    std::ifstream stat("/proc/" + std::to_string(pushd.pid()) + "/stat");
    std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream fields(content.substr(content.rfind(')') + 2));
    std::string field;
    uint64_t utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14) utime = std::stoull(field);
      if (i == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  };
  double cpu_before = cpu_seconds();
  auto window_start = steady_clock::now();
  std::this_thread::sleep_for(milliseconds(1000));  // the window being measured
  double cpu_used = cpu_seconds() - cpu_before;
  EXPECT_LT(cpu_used, 0.3 * SecondsSince(window_start)) << cpu_used;
  EXPECT_EQ(CountLines(pushd.Stderr(), "limit open_files:"), 1) << pushd.Stderr();

  // Descriptors come back when the idle sockets go, and service resumes.
  idle.clear();
  std::unique_ptr<WsClient> ws;
  EXPECT_TRUE(WaitFor([&] {
    ws = WsClient::Connect(port, "/ws?user_id=after");
    return ws != nullptr;
  }));
  ASSERT_TRUE(ws);
  EXPECT_EQ(ws->ReadJson().at("type"), "welcome");
  ExpectDelivered(pushd, *ws, "after", "1");
  // Retries every 100 ms, not a busy loop: a handful of failed accepts a second.
  int64_t failures = LimitHits(port, "open_files");
  EXPECT_GE(failures, 1);
  EXPECT_LT(failures, 200);
}

}  // namespace
}  // namespace push::testing
