#pragma once

// Real network clients for tests: a WebSocket client (Boost.Beast), a raw TCP client that
// speaks WebSocket frames by hand (for clients that misbehave), and a small HTTP client.
// Beast stays inside clients.cc so test files compile quickly.

#include <boost/json/value.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace push::testing {

using std::chrono::milliseconds;
inline constexpr milliseconds kDefaultTimeout{10000};

struct HttpResponse {
  int status = 0;  // 0 = no response (connection failed)
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

HttpResponse HttpRequest(int port, const std::string& method, const std::string& target,
                         const std::map<std::string, std::string>& headers = {},
                         const std::string& body = "");

// The same over TLS to https://localhost:port (connecting to 127.0.0.1), trusting only the
// certificate(s) in `ca_pem` and checking that the server's certificate names localhost.
// status 0 = no response (connection or handshake failed).
HttpResponse HttpsRequest(int port, const std::string& ca_pem, const std::string& method,
                          const std::string& target,
                          const std::map<std::string, std::string>& headers = {},
                          const std::string& body = "");

// The headers of a WebSocket upgrade request, for HttpRequest to reach the /ws checks and read
// the body of a refusal.
std::map<std::string, std::string> UpgradeHeaders();

// The same request as raw bytes: "GET <target> <http_version>", Host and the upgrade headers,
// then `extra_headers` (each line ending "\r\n") and the blank line.
std::string UpgradeRequest(const std::string& target, const std::string& extra_headers = "",
                           const std::string& http_version = "HTTP/1.1");

// What a read on a WebSocket returned.
struct WsEvent {
  enum Kind { kText, kBinary, kClosed, kError, kTimeout } kind = kError;
  std::string data;         // frame payload for kText/kBinary, error text for kError
  uint16_t close_code = 0;  // for kClosed
  std::string close_reason;
};

class WsClient {
 public:
  // Opens ws://127.0.0.1:port{target}. On refusal returns nullptr and sets *http_status.
  static std::unique_ptr<WsClient> Connect(int port, const std::string& target,
                                           const std::map<std::string, std::string>& headers = {},
                                           int* http_status = nullptr);
  // Opens wss://localhost:port{target} (connecting to 127.0.0.1), trusting only `ca_pem` and
  // checking the server's certificate names localhost. On failure returns nullptr and sets
  // *error (TLS or HTTP) and *http_status (0 when no HTTP answer came).
  static std::unique_ptr<WsClient> ConnectTls(
      int port, const std::string& target, const std::string& ca_pem,
      const std::map<std::string, std::string>& headers = {}, int* http_status = nullptr,
      std::string* error = nullptr);
  ~WsClient();

  WsEvent Read(milliseconds timeout = kDefaultTimeout);
  // Reads a text frame and parses it as JSON; fails the test and returns null otherwise.
  boost::json::value ReadJson(milliseconds timeout = kDefaultTimeout);
  bool SendText(const std::string& text);
  bool SendBinary(const std::string& bytes);
  // Sends a close frame and waits for the handshake to finish.
  void Close(uint16_t code = 1000);

 private:
  struct Impl;
  explicit WsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A raw TCP client: performs the upgrade itself, then reads and writes frames byte by byte.
// It never answers pings unless asked, and can stop reading entirely.
class RawClient {
 public:
  static std::unique_ptr<RawClient> Connect(int port);
  ~RawClient();

  bool SendBytes(const std::string& bytes);
  // Sends an upgrade for `target`; returns the HTTP status of the answer (101 on success).
  int Upgrade(const std::string& target, const std::map<std::string, std::string>& headers = {});

  struct Frame {
    uint8_t opcode = 0;  // 0x1 text, 0x2 binary, 0x8 close, 0x9 ping, 0xA pong
    std::string payload;
    uint16_t close_code() const;
  };
  // The next frame, or nullopt on EOF / timeout (see eof()).
  std::optional<Frame> ReadFrame(milliseconds timeout = kDefaultTimeout);
  bool eof() const { return eof_; }
  // Builds a client frame; `mask` false makes an (illegal) unmasked frame.
  static std::string EncodeFrame(uint8_t opcode, const std::string& payload, bool mask = true,
                                 bool fin = true, uint8_t rsv = 0);
  // Shrinks the socket's receive buffer (set before Upgrade) so a stalled reader backs up fast.
  void SetReceiveBuffer(int bytes);

 private:
  explicit RawClient(int fd) : fd_(fd) {}
  bool Fill(size_t n, milliseconds timeout);
  int fd_;
  std::string buffer_;
  bool eof_ = false;
};

}  // namespace push::testing
