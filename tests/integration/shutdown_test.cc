// Graceful shutdown of a real pushd: SIGTERM/SIGINT close every WebSocket with 1001, readiness
// goes to 503, new work is refused, and the process exits 0 within --drain_timeout.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <vector>

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

// One keep-alive HTTP/1.1 connection opened before the shutdown, so requests can still reach
// the server after it stopped accepting new connections.
class KeepAliveHttp {
 public:
  explicit KeepAliveHttp(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~KeepAliveHttp() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }

  // Sends one request and returns the response's status (0 on failure); the body goes to *body.
  int Request(const std::string& request_head, std::string* body = nullptr) {
    if (fd_ < 0) return 0;
    if (send(fd_, request_head.data(), request_head.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request_head.size())) {
      return 0;
    }
    std::string in;
    size_t header_end = std::string::npos;
    size_t length = 0;
    auto deadline = steady_clock::now() + std::chrono::seconds(5);
    while (steady_clock::now() < deadline) {
      if (header_end == std::string::npos) {
        header_end = in.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          size_t cl = in.find("Content-Length: ");
          if (cl != std::string::npos && cl < header_end) length = std::stoul(in.substr(cl + 16));
        }
      }
      if (header_end != std::string::npos && in.size() >= header_end + 4 + length) break;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) < 0) return 0;
      if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char chunk[4096];
      ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) return 0;
      in.append(chunk, static_cast<size_t>(n));
    }
    if (header_end == std::string::npos) return 0;
    if (body) *body = in.substr(header_end + 4, length);
    int status = 0;
    std::sscanf(in.c_str(), "HTTP/1.1 %d", &status);
    return status;
  }

 private:
  int fd_ = -1;
};

const char kReadyz[] = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

TEST(ShutdownTest, SigtermClosesEveryWebSocketWith1001AndExitsZeroQuickly) {
  PushdProcess pushd;  // --drain_timeout=5s
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  std::vector<std::unique_ptr<WsClient>> clients;
  for (const char* user : {"amy", "ben", "amy"}) {
    clients.push_back(ConnectUser(pushd, user));
    ASSERT_TRUE(clients.back());
  }
  // `stub` stays connected through the shutdown, as a backend's long-lived channel does.
  ASSERT_EQ(DoList(*stub).total(), 3u);

  auto signalled = steady_clock::now();
  pushd.Signal(SIGTERM);
  int64_t first_close_ms = -1;
  for (auto& c : clients) {
    WsEvent event = c->Read(milliseconds(8000));
    if (first_close_ms < 0) first_close_ms = MillisSince(signalled);
    ASSERT_EQ(event.kind, WsEvent::kClosed) << "kind=" << event.kind << " data=" << event.data;
    EXPECT_EQ(event.close_code, 1001);
  }
  // Browsers hear about the shutdown at once, not at the drain deadline.
  EXPECT_LT(first_close_ms, 2000);
  int status = pushd.Wait(10000);
  int64_t took = MillisSince(signalled);
  EXPECT_EQ(status, 0);
  // Every client finished the close handshake and no RPC was in flight, so nothing may hold
  // the drain (or the 1001s) up to the 5 s deadline.
  EXPECT_LT(took, 3000);
}

TEST(ShutdownTest, SigintAlsoDrainsAndExitsZero) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto ws = ConnectUser(pushd, "cid");
  ASSERT_TRUE(ws);
  pushd.Signal(SIGINT);
  WsEvent event = ws->Read(milliseconds(5000));
  ASSERT_EQ(event.kind, WsEvent::kClosed);
  EXPECT_EQ(event.close_code, 1001);
  EXPECT_EQ(pushd.Wait(10000), 0);
}

TEST(ShutdownTest, IdleProcessExitsZeroAtOnce) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto signalled = steady_clock::now();
  EXPECT_EQ(pushd.Terminate(10000), 0);
  EXPECT_LT(MillisSince(signalled), 3000);
}

// A client that never answers the close handshake keeps the drain going until
// --drain_timeout; meanwhile the process is observably draining.
TEST(ShutdownTest, WhileDrainingItRefusesWorkAndStillExitsZeroByTheDeadline) {
  PushdProcess pushd({"--drain_timeout=3s"});
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto stuck = ConnectRawAndReadWelcome(pushd.ws_port(), "/ws?user_id=stuck");
  ASSERT_TRUE(stuck);
  KeepAliveHttp http(pushd.ws_port());
  KeepAliveHttp upgrade_conn(pushd.ws_port());
  ASSERT_TRUE(http.ok() && upgrade_conn.ok());
  ASSERT_EQ(http.Request(kReadyz), 200);
  ASSERT_TRUE(DoPush(*stub, "someone", "1").ok());

  auto signalled = steady_clock::now();
  pushd.Signal(SIGTERM);
  // Readiness goes off first; the connection opened before the signal can still ask.
  std::string body;
  EXPECT_TRUE(WaitFor([&] { return http.Request(kReadyz, &body) == 503; }, milliseconds(2000)))
      << body;
  // Not taking work: upgrades on an open HTTP connection get 503, new connections are
  // refused, Push is UNAVAILABLE.
  EXPECT_EQ(upgrade_conn.Request("GET /ws?user_id=late HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                 "Sec-WebSocket-Version: 13\r\n\r\n"),
            503);
  EXPECT_TRUE(WaitFor([&] { return !WsClient::Connect(pushd.ws_port(), "/ws?user_id=late"); },
                      milliseconds(2000)));
  // On the backend's already-open channel, so it tells what a connected backend sees.
  auto push_sent = steady_clock::now();
  grpc::Status push = DoPush(*stub, "someone", "2");
  int64_t push_ms = MillisSince(push_sent);
  EXPECT_EQ(push.error_code(), grpc::StatusCode::UNAVAILABLE) << push.error_message();
  EXPECT_LT(push_ms, 1000) << "a Push during the drain should be refused at once, not held";
  EXPECT_LT(MillisSince(signalled), 3000) << "the checks above ran after the drain deadline";

  // The connected client is told 1001 and never answers, so the drain runs to its deadline.
  std::optional<RawClient::Frame> close;
  for (int i = 0; i < 10; ++i) {
    close = stuck->ReadFrame(milliseconds(5000));
    if (!close || close->opcode == 0x8) break;
  }
  ASSERT_TRUE(close) << "no close frame; eof=" << stuck->eof();
  EXPECT_EQ(close->opcode, 0x8);
  EXPECT_EQ(close->close_code(), 1001);

  int status = pushd.Wait(10000);
  EXPECT_EQ(status, 0);
  EXPECT_LT(MillisSince(signalled), 3000 + 2000);
  // The stuck client's connection is gone with the process.
  for (int i = 0; i < 10 && !stuck->eof(); ++i) stuck->ReadFrame(milliseconds(1000));
  EXPECT_TRUE(stuck->eof());
}

// A client whose socket is full (it stopped reading) cannot hold the process past the deadline.
TEST(ShutdownTest, StalledReaderDoesNotHoldExitPastDrainTimeout) {
  PushdProcess pushd({"--drain_timeout=2s", "--send_queue_bytes=67108864"});
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  auto stalled = RawClient::Connect(pushd.ws_port());
  ASSERT_TRUE(stalled);
  stalled->SetReceiveBuffer(4096);
  ASSERT_EQ(stalled->Upgrade("/ws?user_id=stalled"), 101);
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub, "stalled").total() == 1; }));
  std::string data = JsonString(60000, 'x');
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(DoPush(*stub, "stalled", data).ok());
  ASSERT_TRUE(WaitFor([&] {
    auto list = DoList(*stub, "stalled");
    return list.clients_size() == 1 && list.clients(0).queued_bytes() > 0;
  }));
  auto signalled = steady_clock::now();
  pushd.Signal(SIGTERM);
  EXPECT_EQ(pushd.Wait(10000), 0);
  EXPECT_LT(MillisSince(signalled), 2000 + 2000);
}

}  // namespace
}  // namespace push::testing
