#include "tests/testing/clients.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json/parse.hpp>
#include <cstring>
#include <random>
#include <variant>

#include "gtest/gtest.h"

namespace push::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

namespace {

// A client TLS context that trusts only `ca_pem` and checks the server's name.
std::unique_ptr<net::ssl::context> ClientTlsContext(const std::string& ca_pem) {
  auto ctx = std::make_unique<net::ssl::context>(net::ssl::context::tls_client);
  beast::error_code ec;
  ctx->add_certificate_authority(net::buffer(ca_pem), ec);
  EXPECT_FALSE(ec) << "CA certificate: " << ec.message();
  ctx->set_verify_mode(net::ssl::verify_peer);
  return ctx;
}

// TLS handshake as https://localhost on a connected stream (SNI and name check: localhost).
beast::error_code ClientHandshake(TlsStream& stream) {
  beast::error_code ec;
  if (!SSL_set_tlsext_host_name(stream.native_handle(), "localhost")) {
    return beast::error_code(static_cast<int>(::ERR_get_error()), net::error::get_ssl_category());
  }
  stream.set_verify_callback(net::ssl::host_name_verification("localhost"));
  stream.handshake(net::ssl::stream_base::client, ec);
  return ec;
}

template <class Stream>
HttpResponse Exchange(Stream& stream, const std::string& method, const std::string& target,
                      const std::map<std::string, std::string>& headers, const std::string& body) {
  HttpResponse out;
  beast::error_code ec;
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  http::write(stream, req, ec);
  if (ec) return out;
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res, ec);
  if (ec) return out;
  out.status = res.result_int();
  out.body = res.body();
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(c));
    out.headers[name] = std::string(field.value());
  }
  return out;
}

}  // namespace

HttpResponse HttpRequest(int port, const std::string& method, const std::string& target,
                         const std::map<std::string, std::string>& headers,
                         const std::string& body) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  stream.expires_after(std::chrono::seconds(10));
  stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return {};
  return Exchange(stream, method, target, headers, body);
}

HttpResponse HttpsRequest(int port, const std::string& ca_pem, const std::string& method,
                          const std::string& target,
                          const std::map<std::string, std::string>& headers,
                          const std::string& body) {
  net::io_context ioc;
  std::unique_ptr<net::ssl::context> ctx = ClientTlsContext(ca_pem);
  TlsStream stream(ioc, *ctx);
  beast::error_code ec;
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
  beast::get_lowest_layer(stream).connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port),
                                          ec);
  if (ec || ClientHandshake(stream)) return {};
  return Exchange(stream, method, target, headers, body);
}

// RFC 6455's sample key: pushd only checks that it is 16 bytes in base64.
constexpr char kWebSocketKey[] = "dGhlIHNhbXBsZSBub25jZQ==";

std::map<std::string, std::string> UpgradeHeaders() {
  return {{"Connection", "Upgrade"},
          {"Upgrade", "websocket"},
          {"Sec-WebSocket-Key", kWebSocketKey},
          {"Sec-WebSocket-Version", "13"}};
}

std::string UpgradeRequest(const std::string& target, const std::string& extra_headers,
                           const std::string& http_version) {
  return "GET " + target + " " + http_version +
         "\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " +
         kWebSocketKey + "\r\nSec-WebSocket-Version: 13\r\n" + extra_headers + "\r\n";
}

// ---- WsClient --------------------------------------------------------------------------------

struct WsClient::Impl {
  net::io_context ioc;
  std::unique_ptr<net::ssl::context> tls;  // outlives the stream that uses it
  std::variant<std::monostate, websocket::stream<beast::tcp_stream>, websocket::stream<TlsStream>>
      ws;
  beast::flat_buffer buffer;

  // Runs the io_context until `done` or the timeout; returns false on timeout.
  template <typename Done>
  bool RunUntil(Done done, milliseconds timeout) {
    ioc.restart();
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      ioc.run_one_for(deadline - std::chrono::steady_clock::now());
    }
    return done();
  }

  // Calls `f` with the open WebSocket stream, plain or TLS.
  template <typename F>
  decltype(auto) Visit(F&& f) {
    if (auto* plain = std::get_if<1>(&ws)) return f(*plain);
    return f(std::get<2>(ws));
  }

  void CloseSocket() {
    Visit([](auto& s) {
      beast::error_code ignored;
      beast::get_lowest_layer(s).socket().close(ignored);
    });
  }

  // The WebSocket handshake on a connected (and for TLS, secured) stream.
  template <class Ws>
  bool Handshake(Ws& s, int port, const std::string& target,
                 const std::map<std::string, std::string>& headers, int* http_status,
                 std::string* error) {
    s.set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
      for (const auto& [k, v] : headers) req.set(k, v);
    }));
    websocket::response_type res;
    beast::error_code ec;
    s.handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
    if (http_status) *http_status = res.result_int();
    if (ec) {
      if (error) *error = ec.message();
      return false;
    }
    beast::get_lowest_layer(s).expires_never();
    s.read_message_max(64 << 20);
    return true;
  }
};

WsClient::WsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
WsClient::~WsClient() { impl_->CloseSocket(); }

std::unique_ptr<WsClient> WsClient::Connect(int port, const std::string& target,
                                            const std::map<std::string, std::string>& headers,
                                            int* http_status) {
  auto impl = std::make_unique<Impl>();
  auto& ws = impl->ws.emplace<1>(impl->ioc);
  beast::error_code ec;
  auto& lowest = beast::get_lowest_layer(ws);
  lowest.expires_after(std::chrono::seconds(10));
  lowest.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  if (ec) {
    if (http_status) *http_status = 0;
    return nullptr;
  }
  if (!impl->Handshake(ws, port, target, headers, http_status, nullptr)) return nullptr;
  return std::unique_ptr<WsClient>(new WsClient(std::move(impl)));
}

std::unique_ptr<WsClient> WsClient::ConnectTls(int port, const std::string& target,
                                               const std::string& ca_pem,
                                               const std::map<std::string, std::string>& headers,
                                               int* http_status, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->tls = ClientTlsContext(ca_pem);
  auto& ws = impl->ws.emplace<2>(impl->ioc, *impl->tls);
  if (http_status) *http_status = 0;
  beast::error_code ec;
  auto& lowest = beast::get_lowest_layer(ws);
  lowest.expires_after(std::chrono::seconds(10));
  lowest.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  if (!ec) ec = ClientHandshake(ws.next_layer());
  if (ec) {
    if (error) *error = ec.message();
    return nullptr;
  }
  if (!impl->Handshake(ws, port, target, headers, http_status, error)) return nullptr;
  return std::unique_ptr<WsClient>(new WsClient(std::move(impl)));
}

WsEvent WsClient::Read(milliseconds timeout) {
  return impl_->Visit([&](auto& ws) {
    WsEvent event;
    bool done = false;
    beast::error_code result;
    impl_->buffer.clear();
    ws.async_read(impl_->buffer, [&](beast::error_code ec, std::size_t) {
      result = ec;
      done = true;
    });
    if (!impl_->RunUntil([&] { return done; }, timeout)) {
      // Abandon the read: the connection is unusable after a timeout, as for any real client.
      impl_->CloseSocket();
      impl_->RunUntil([&] { return done; }, milliseconds(1000));
      event.kind = WsEvent::kTimeout;
      return event;
    }
    if (result == websocket::error::closed) {
      event.kind = WsEvent::kClosed;
      event.close_code = ws.reason().code;
      event.close_reason = std::string(ws.reason().reason.c_str());
      return event;
    }
    if (result) {
      event.kind = WsEvent::kError;
      event.data = result.message();
      return event;
    }
    event.kind = ws.got_text() ? WsEvent::kText : WsEvent::kBinary;
    event.data = beast::buffers_to_string(impl_->buffer.data());
    return event;
  });
}

boost::json::value WsClient::ReadJson(milliseconds timeout) {
  WsEvent event = Read(timeout);
  if (event.kind != WsEvent::kText) {
    ADD_FAILURE() << "expected a text frame, got kind=" << event.kind << " data=" << event.data
                  << " close=" << event.close_code << " " << event.close_reason;
    return nullptr;
  }
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(event.data, ec);
  if (ec) {
    ADD_FAILURE() << "frame is not JSON: " << event.data;
    return nullptr;
  }
  return v;
}

bool WsClient::SendText(const std::string& text) {
  return impl_->Visit([&](auto& ws) {
    beast::error_code ec;
    ws.text(true);
    ws.write(net::buffer(text), ec);
    return !ec;
  });
}

bool WsClient::SendBinary(const std::string& bytes) {
  return impl_->Visit([&](auto& ws) {
    beast::error_code ec;
    ws.binary(true);
    ws.write(net::buffer(bytes), ec);
    return !ec;
  });
}

void WsClient::Close(uint16_t code) {
  bool done = false;
  impl_->Visit([&](auto& ws) {
    ws.async_close(websocket::close_reason(static_cast<websocket::close_code>(code)),
                   [&](beast::error_code) { done = true; });
  });
  impl_->RunUntil([&] { return done; }, milliseconds(5000));
}

// ---- RawClient -------------------------------------------------------------------------------

std::unique_ptr<RawClient> RawClient::Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return nullptr;
  }
  return std::unique_ptr<RawClient>(new RawClient(fd));
}

RawClient::~RawClient() { close(fd_); }

void RawClient::SetReceiveBuffer(int bytes) {
  setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

bool RawClient::SendBytes(const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

bool RawClient::Fill(size_t n, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (buffer_.size() < n) {
    auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[16384];
    ssize_t r = recv(fd_, chunk, sizeof(chunk), 0);
    if (r <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<size_t>(r));
  }
  return true;
}

int RawClient::Upgrade(const std::string& target,
                       const std::map<std::string, std::string>& headers) {
  std::string extra;
  for (const auto& [k, v] : headers) extra += k + ": " + v + "\r\n";
  if (!SendBytes(UpgradeRequest(target, extra))) return 0;
  size_t end;
  auto deadline = std::chrono::steady_clock::now() + kDefaultTimeout;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (std::chrono::steady_clock::now() > deadline || !Fill(buffer_.size() + 1, kDefaultTimeout)) {
      return 0;
    }
  }
  int status = 0;
  std::sscanf(buffer_.c_str(), "HTTP/1.1 %d", &status);
  buffer_.erase(0, end + 4);
  return status;
}

std::optional<RawClient::Frame> RawClient::ReadFrame(milliseconds timeout) {
  if (!Fill(2, timeout)) return std::nullopt;
  auto b0 = static_cast<uint8_t>(buffer_[0]);
  auto b1 = static_cast<uint8_t>(buffer_[1]);
  uint64_t len = b1 & 0x7F;
  size_t header = 2;
  if (len == 126) {
    if (!Fill(4, timeout)) return std::nullopt;
    len = (uint64_t{static_cast<uint8_t>(buffer_[2])} << 8) | static_cast<uint8_t>(buffer_[3]);
    header = 4;
  } else if (len == 127) {
    if (!Fill(10, timeout)) return std::nullopt;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<uint8_t>(buffer_[2 + i]);
    header = 10;
  }
  if (!Fill(header + len, timeout)) return std::nullopt;
  Frame f;
  f.opcode = b0 & 0x0F;
  f.payload = buffer_.substr(header, len);
  buffer_.erase(0, header + len);
  return f;
}

uint16_t RawClient::Frame::close_code() const {
  if (opcode != 0x8 || payload.size() < 2) return 0;
  return static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                               static_cast<uint8_t>(payload[1]));
}

std::string RawClient::EncodeFrame(uint8_t opcode, const std::string& payload, bool mask, bool fin,
                                   uint8_t rsv) {
  std::string out;
  out.push_back(static_cast<char>((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0F)));
  uint8_t mask_bit = mask ? 0x80 : 0;
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(mask_bit | payload.size()));
  } else if (payload.size() < 65536) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size() & 0xFF));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int i = 7; i >= 0; --i)
      out.push_back(static_cast<char>((payload.size() >> (8 * i)) & 0xFF));
  }
  if (!mask) return out + payload;
  uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  for (uint8_t k : key) out.push_back(static_cast<char>(k));
  for (size_t i = 0; i < payload.size(); ++i) {
    out.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
  }
  return out;
}

}  // namespace push::testing
