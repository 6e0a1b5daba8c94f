#include "edge/edge_server.h"

#include "edge/edge_internal.h"
#include "edge/http_session.h"

// Plain connections are served here, TLS ones in tls_session.cc, so that this file needs none
// of Asio's SSL headers.

namespace push::edge {
namespace {

// After a failed accept (out of descriptors, most often) before trying again: the failing
// connection stays in the listen queue, so retrying at once would spin.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

bool OutOfDescriptors(const beast::error_code& ec) {
  return ec == net::error::no_descriptors ||
         ec == boost::system::errc::too_many_files_open_in_system ||
         ec == net::error::no_buffer_space || ec == net::error::no_memory;
}

}  // namespace

// ---- Listener --------------------------------------------------------------------------------

void EdgeServer::Impl::DoAccept() {
  acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !accepting.load()) return;
    if (ec) {
      OnAcceptError(ec);
      return;
    }
    beast::error_code ignored;
    if (counters.sockets.load(std::memory_order_relaxed) >= max_sockets) {
      // Past --max_connections and the room for handshakes: close it now rather than let
      // sockets pile up until the descriptors run out.
      socket.close(ignored);
      RecordLimitHit(Limit::kSockets);
      DoAccept();
      return;
    }
    socket.set_option(tcp::no_delay(true), ignored);
    if (tls) {
      RunTlsHttpSession(std::move(socket), *this);
    } else {
      std::make_shared<HttpSession<beast::tcp_stream>>(*this, std::move(socket))->Run();
    }
    DoAccept();
  });
}

void EdgeServer::Impl::OnAcceptError(const beast::error_code& ec) {
  // Back off instead of spinning: the connection that failed is still queued.
  if (OutOfDescriptors(ec)) {
    RecordLimitHit(Limit::kOpenFiles);
  } else if (uint64_t n = accept_error_log.Hit(); n > 0) {
    spdlog::warn("accept failed ({} time(s) since the last report): {}", n, ec.message());
  }
  accept_retry.expires_after(kAcceptRetryDelay);
  accept_retry.async_wait([this](beast::error_code wait_ec) {
    if (!wait_ec && accepting.load()) DoAccept();
  });
}

EdgeServer::EdgeServer(EdgeOptions options, store::Store* store, Hub* hub)
    : impl_(std::make_unique<Impl>(std::move(options), store, hub)) {}

EdgeServer::~EdgeServer() { Stop(); }

absl::Status EdgeServer::Start() {
  if (!impl_->options.tls_cert_pem.empty()) {
    absl::StatusOr<std::shared_ptr<TlsContext>> tls =
        MakeTlsContext(impl_->options.tls_cert_pem, impl_->options.tls_key_pem);
    if (!tls.ok()) return tls.status();
    impl_->tls = std::move(*tls);
  }
  const std::string& listen = impl_->options.listen;
  size_t colon = listen.rfind(':');
  std::string host = listen.substr(0, colon);
  std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  beast::error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto results = resolver.resolve(host, port, tcp::resolver::passive, ec);
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ws_listen=", listen, ": cannot resolve: ", ec.message()));
  }
  tcp::endpoint endpoint = results.begin()->endpoint();
  tcp::acceptor& acceptor = impl_->acceptor.emplace(impl_->accept_strand);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("--ws_listen=", listen, ": cannot listen: ", ec.message()));
  }
  impl_->port = acceptor.local_endpoint().port();
  impl_->DoAccept();
  impl_->wheel.Start();
  int threads = std::max(1, impl_->options.threads);
  for (int i = 0; i < threads; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  return absl::OkStatus();
}

int EdgeServer::port() const { return impl_->port; }

void EdgeServer::StopAccepting() {
  impl_->accepting.store(false);
  net::post(impl_->accept_strand, [impl = impl_.get()] {
    beast::error_code ignored;
    if (impl->acceptor) impl->acceptor->close(ignored);
    impl->accept_retry.cancel();
  });
}

int64_t EdgeServer::CloseAll(uint16_t code, const std::string& reason, absl::Time deadline,
                             absl::Duration spread) {
  // Spread the closes evenly over the window so that clients do not all reconnect (to the
  // other replicas) in the same instant.
  std::vector<std::shared_ptr<Connection>> all = impl_->hub->All();
  absl::Time start = absl::Now();
  spread = std::min(spread, deadline - start);
  for (size_t i = 0; i < all.size(); ++i) {
    absl::Time at = start + spread * (static_cast<double>(i) / static_cast<double>(all.size()));
    if (absl::Duration wait = at - absl::Now(); wait > absl::ZeroDuration()) absl::SleepFor(wait);
    all[i]->Close(code, reason);
  }
  while (impl_->counters.open_sessions.load() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  return impl_->counters.open_sessions.load();
}

void EdgeServer::Stop() {
  if (impl_->threads.empty()) return;
  impl_->work.reset();
  // The timer wheel re-arms while it holds entries: the io_context need not run out of work.
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  // Sessions still registered (past the drain deadline) must not outlive the io_context their
  // sockets belong to: drop the hub's references; the io_context's destructor frees the rest.
  for (const auto& c : impl_->hub->All()) impl_->hub->Remove(*c, "shutdown");
}

}  // namespace push::edge
