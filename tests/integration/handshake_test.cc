// The WebSocket handshake as a client sees it on the wire: every refusal of a malformed upgrade
// comes in pushd's JSON format (none from Beast's own checks in plain text), and bytes a client
// sends right behind its upgrade request, in the same segment, are its first frames: nothing of
// them is lost, on plain and TLS connections.

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <tuple>
#include <variant>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/temp_files.h"
#include "tests/testing/test_util.h"
#include "tests/testing/tls_cert.h"

namespace push::testing {
namespace {

namespace net = boost::asio;
namespace json = boost::json;
using net::ip::tcp;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// A client that writes bytes exactly as given (each Write one send, so a request and frames in
// one Write leave in one segment) and reads the server's bytes as they come: plain or TLS.
class ByteClient {
 public:
  // TLS when `ca_pem` is set (the server's self-signed certificate).
  explicit ByteClient(int port, const std::string* ca_pem = nullptr) {
    socket_ = std::make_unique<tcp::socket>(ioc_);
    boost::system::error_code ec;
    socket_->connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
    if (ec) return;
    if (ca_pem != nullptr) {
      ctx_ = std::make_unique<net::ssl::context>(net::ssl::context::tls_client);
      ctx_->add_certificate_authority(net::buffer(*ca_pem), ec);
      ctx_->set_verify_mode(net::ssl::verify_peer);
      tls_ = std::make_unique<net::ssl::stream<tcp::socket&>>(*socket_, *ctx_);
      tls_->handshake(net::ssl::stream_base::client, ec);
      if (ec) return;
    }
    ok_ = true;
  }

  bool ok() const { return ok_; }

  bool Write(const std::string& bytes) {
    boost::system::error_code ec;
    if (tls_) {
      net::write(*tls_, net::buffer(bytes), ec);
    } else {
      net::write(*socket_, net::buffer(bytes), ec);
    }
    return !ec;
  }

  // Reads until `done(all bytes so far)` holds, the peer closes or `timeout` passes.
  std::string& ReadUntil(const std::function<bool(const std::string&)>& done,
                         milliseconds timeout = milliseconds(10000)) {
    auto deadline = steady_clock::now() + timeout;
    char chunk[4096];
    bool open = true;
    while (open && !done(received_) && steady_clock::now() < deadline) {
      // Asynchronously, so that the wait is bounded for TLS as for plain TCP.
      bool finished = false;
      auto on_read = [&](boost::system::error_code ec, size_t n) {
        received_.append(chunk, n);
        open = !ec;
        finished = true;
      };
      if (tls_) {
        tls_->async_read_some(net::buffer(chunk), on_read);
      } else {
        socket_->async_read_some(net::buffer(chunk), on_read);
      }
      ioc_.run_for(deadline - steady_clock::now());
      if (!finished) {
        socket_->cancel();
        ioc_.run();  // the cancelled read completes
        open = false;
      }
      ioc_.restart();
    }
    return received_;
  }

 private:
  net::io_context ioc_;
  std::unique_ptr<tcp::socket> socket_;
  std::unique_ptr<net::ssl::context> ctx_;
  std::unique_ptr<net::ssl::stream<tcp::socket&>> tls_;
  std::string received_;
  bool ok_ = false;
};

// The HTTP status of a response at the start of `bytes`, 0 while its header is incomplete.
int ResponseStatus(const std::string& bytes) {
  if (bytes.find("\r\n\r\n") == std::string::npos) return 0;
  int minor = 0, status = 0;
  std::sscanf(bytes.c_str(), "HTTP/1.%d %d", &minor, &status);
  return status;
}

struct Frame {
  uint8_t opcode = 0;
  std::string payload;
};

// The server's (unmasked) frames after the response header in `bytes`; stops at an incomplete
// frame.
std::vector<Frame> Frames(const std::string& bytes) {
  std::vector<Frame> out;
  size_t pos = bytes.find("\r\n\r\n");
  if (pos == std::string::npos) return out;
  pos += 4;
  while (pos + 2 <= bytes.size()) {
    auto b0 = static_cast<uint8_t>(bytes[pos]);
    uint64_t len = static_cast<uint8_t>(bytes[pos + 1]) & 0x7f;
    size_t header = 2;
    if (len == 126) {
      if (pos + 4 > bytes.size()) break;
      len = (uint64_t{static_cast<uint8_t>(bytes[pos + 2])} << 8) |
            static_cast<uint8_t>(bytes[pos + 3]);
      header = 4;
    } else if (len == 127) {
      break;  // nothing this test reads is that large
    }
    if (pos + header + len > bytes.size()) break;
    out.push_back({static_cast<uint8_t>(b0 & 0x0f), bytes.substr(pos + header, len)});
    pos += header + len;
  }
  return out;
}

bool HasFrame(const std::string& bytes, uint8_t opcode, const std::string& payload) {
  for (const Frame& f : Frames(bytes)) {
    if (f.opcode == opcode && f.payload == payload) return true;
  }
  return false;
}

// ---- Refusals --------------------------------------------------------------------------------

TEST(HandshakeTest, MalformedUpgradesAreRefusedWithJsonBodies) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  const std::map<std::string, std::string> good = UpgradeHeaders();
  struct Case {
    std::string name;
    std::string header;  // changed ("" value: removed)
    std::string value;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"version 8", "Sec-WebSocket-Version", "8", 426, "Sec-WebSocket-Version: 13"},
      {"no version", "Sec-WebSocket-Version", "", 426, "Sec-WebSocket-Version: 13"},
      {"no key", "Sec-WebSocket-Key", "", 400, "missing Sec-WebSocket-Key"},
      {"key !!", "Sec-WebSocket-Key", "!!", 400, "16 bytes in base64"},
      {"short key", "Sec-WebSocket-Key", "AAAA", 400, "16 bytes in base64"},
      {"24 bytes, not base64", "Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!==", 400,
       "16 bytes in base64"},
      {"no padding", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQAA", 400, "16 bytes in base64"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto headers = good;
    if (c.value.empty()) {
      headers.erase(c.header);
    } else {
      headers[c.header] = c.value;
    }
    HttpResponse res = HttpRequest(pushd.ws_port(), "GET", "/ws?user_id=alice", headers);
    EXPECT_EQ(res.status, c.status) << res.body;
    EXPECT_EQ(res.headers["content-type"], "application/json");
    boost::system::error_code ec;
    json::value body = json::parse(res.body, ec);
    ASSERT_FALSE(ec) << res.body;
    ASSERT_TRUE(body.is_object() && body.as_object().contains("error")) << res.body;
    EXPECT_TRUE(absl::StrContains(json::value_to<std::string>(body.at("error")), c.says))
        << res.body;
    if (c.status == 426) {
      EXPECT_EQ(res.headers["sec-websocket-version"], "13");
    }
  }
  // HTTP/1.0 cannot upgrade; a body has no place in an upgrade either.
  for (const auto& [name, request, says] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"HTTP/1.0", UpgradeRequest("/ws?user_id=alice", "", "HTTP/1.0"), "HTTP/1.1"},
           {"a body", UpgradeRequest("/ws?user_id=alice", "Content-Length: 2\r\n") + "{}",
            "no body"}}) {
    SCOPED_TRACE(name);
    ByteClient raw(pushd.ws_port());
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE(raw.Write(request));
    std::string& got = raw.ReadUntil([](const std::string& b) {
      return ResponseStatus(b) != 0 && b.find('}') != std::string::npos;
    });
    EXPECT_EQ(ResponseStatus(got), 400) << got;
    EXPECT_TRUE(absl::StrContains(got, "Content-Type: application/json")) << got;
    EXPECT_TRUE(absl::StrContains(got, "{\"error\":")) << got;
    EXPECT_TRUE(absl::StrContains(got, says)) << got;
  }
  // None of them became a connection; the well-formed one does.
  auto stub = pushd.Stub();
  EXPECT_EQ(DoList(*stub).total(), 0u);
  auto raw = RawClient::Connect(pushd.ws_port());
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->Upgrade("/ws?user_id=alice"), 101);
  EXPECT_TRUE(WaitFor([&] { return DoList(*stub, "alice").total() == 1; }));
}

// ---- Bytes behind the request ----------------------------------------------------------------

// Over plain TCP (no CA) or TLS: a ping sent in the same write as the upgrade request is
// answered; a ping whose first bytes come with the request and the rest later is answered too,
// and the stream stays in step (a later ping and a push arrive).
void ExpectEarlyFramesAreRead(const PushdProcess& pushd, v1::PushService::Stub& stub,
                              const std::string* ca_pem) {
  {
    ByteClient raw(pushd.ws_port(), ca_pem);
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE(raw.Write(UpgradeRequest("/ws?user_id=early") +
                          RawClient::EncodeFrame(0x9, "with the request")));
    std::string& got =
        raw.ReadUntil([](const std::string& b) { return HasFrame(b, 0xA, "with the request"); });
    EXPECT_EQ(ResponseStatus(got), 101) << got;
    EXPECT_TRUE(HasFrame(got, 0xA, "with the request"))
        << "no pong; got " << got.size() << " bytes";
  }
  {
    ByteClient raw(pushd.ws_port(), ca_pem);
    ASSERT_TRUE(raw.ok());
    std::string ping = RawClient::EncodeFrame(0x9, "split across the request");
    ASSERT_TRUE(raw.Write(UpgradeRequest("/ws?user_id=split") + ping.substr(0, 3)));
    std::string& got = raw.ReadUntil([](const std::string& b) { return !Frames(b).empty(); });
    ASSERT_EQ(ResponseStatus(got), 101) << got;
    // The welcome came; the ping is not whole yet.
    EXPECT_FALSE(HasFrame(got, 0xA, "split across the request"));
    ASSERT_TRUE(raw.Write(ping.substr(3)));
    raw.ReadUntil(
        [](const std::string& b) { return HasFrame(b, 0xA, "split across the request"); });
    EXPECT_TRUE(HasFrame(got, 0xA, "split across the request"));
    ASSERT_TRUE(raw.Write(RawClient::EncodeFrame(0x9, "after")));
    raw.ReadUntil([](const std::string& b) { return HasFrame(b, 0xA, "after"); });
    EXPECT_TRUE(HasFrame(got, 0xA, "after"));
    // Still open and in step: a push arrives as a message frame, and nothing closed it.
    grpc::Status pushed_status = DoPush(stub, "split", R"({"still":"here"})");
    ASSERT_TRUE(pushed_status.ok()) << pushed_status.error_message();
    raw.ReadUntil([](const std::string& b) {
      for (const Frame& f : Frames(b)) {
        if (f.opcode == 0x1 && absl::StrContains(f.payload, "still")) return true;
      }
      return false;
    });
    bool pushed = false, closed = false;
    for (const Frame& f : Frames(got)) {
      pushed = pushed || (f.opcode == 0x1 && absl::StrContains(f.payload, R"("still":"here")"));
      closed = closed || f.opcode == 0x8;
    }
    EXPECT_TRUE(pushed);
    EXPECT_FALSE(closed);
  }
}

TEST(HandshakeTest, FramesSentWithTheUpgradeRequestAreRead) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  ExpectEarlyFramesAreRead(pushd, *pushd.Stub(), nullptr);
}

TEST(HandshakeTest, FramesSentWithTheUpgradeRequestAreReadOverTls) {
  TestCertificate cert = MakeSelfSignedCertificate();
  TempDir dir;
  PushdProcess pushd({"--tls_cert_file=" + dir.Write("cert.pem", cert.cert_pem),
                      "--tls_key_file=" + dir.Write("key.pem", cert.key_pem)});
  ASSERT_TRUE(pushd.started());
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = cert.cert_pem;
  auto stub = v1::PushService::NewStub(grpc::CreateChannel(
      "localhost:" + std::to_string(pushd.grpc_port()), grpc::SslCredentials(tls)));
  ExpectEarlyFramesAreRead(pushd, *stub, &cert.cert_pem);
}

}  // namespace
}  // namespace push::testing
