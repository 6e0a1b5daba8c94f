// TLS on the edge port: the server context and the TLS instantiations of the session templates.
// The only edge file that includes Asio's SSL headers.

#include <openssl/ssl.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "edge/edge_internal.h"
#include "edge/http_session.h"
#include "edge/websocket_session_impl.h"

namespace push::edge {

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

class TlsContext {
 public:
  net::ssl::context ssl{net::ssl::context::tls_server};
};

namespace {

absl::Status TlsError(const char* what, const beast::error_code& ec) {
  return absl::InvalidArgumentError(absl::StrCat("TLS: ", what, ": ", ec.message()));
}

}  // namespace

absl::StatusOr<std::shared_ptr<TlsContext>> MakeTlsContext(const std::string& cert_pem,
                                                           const std::string& key_pem) {
  auto tls = std::make_shared<TlsContext>();
  net::ssl::context& ctx = tls->ssl;
  SSL_CTX* native = ctx.native_handle();
  beast::error_code ec;
  ctx.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                      net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                      net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use,
                  ec);
  if (ec) return TlsError("options", ec);
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // An idle connection hands its TLS record buffers back (most WebSockets idle most of the time).
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  // An encrypted key must fail, not prompt on the terminal.
  SSL_CTX_set_default_passwd_cb(native, [](char*, int, int, void*) { return -1; });
  ctx.use_certificate_chain(net::buffer(cert_pem), ec);
  if (ec) return TlsError("certificate", ec);
  ctx.use_private_key(net::buffer(key_pem), net::ssl::context::pem, ec);
  if (ec) return TlsError("private key", ec);
  if (SSL_CTX_check_private_key(native) != 1) {
    return absl::InvalidArgumentError("TLS: the private key does not match the certificate");
  }
  return tls;
}

void RunTlsHttpSession(net::ip::tcp::socket&& socket, EdgeServer::Impl& server) {
  std::make_shared<HttpSession<TlsStream>>(server, beast::tcp_stream(std::move(socket)),
                                           server.tls->ssl)
      ->Run();
}

template class WebSocketSession<TlsStream>;

}  // namespace push::edge
