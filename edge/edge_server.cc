#include "edge/edge_server.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/http_query.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "edge/demo_page.h"
#include "edge/upgrade_request.h"
#include "edge/websocket_session.h"
#include "spdlog/spdlog.h"

namespace push::edge {
namespace {

using tcp = net::ip::tcp;

constexpr auto kRequestTimeout = std::chrono::seconds(30);

}  // namespace

struct EdgeServer::Impl {
  EdgeOptions options;
  store::Store* store;
  Hub* hub;
  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> work{ioc.get_executor()};
  std::optional<tcp::acceptor> acceptor;
  // The acceptor and its retry timer live on one strand: accept handlers and StopAccepting may
  // run on different I/O threads.
  net::strand<net::io_context::executor_type> accept_strand{net::make_strand(ioc)};
  net::steady_timer accept_retry{accept_strand};
  std::vector<std::thread> threads;
  std::atomic<int64_t> open_sessions{0};
  std::atomic<bool> accepting{true};
  int port = 0;

  Impl(EdgeOptions o, store::Store* s, Hub* h)
      : options(std::move(o)), store(s), hub(h), ioc(std::max(1, options.threads)) {}

  bool Ready() const { return options.ready == nullptr || options.ready->load(); }
  void DoAccept();
};

// ---- HTTP ------------------------------------------------------------------------------------

// Reads HTTP requests on one connection: answers health, metrics, admin and the demo page, and
// hands WebSocket upgrades of /ws and /getPushNews over to a WebSocketSession.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, EdgeServer::Impl& server)
      : stream_(std::move(socket)), server_(server) {}

  void Run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpSession::DoRead, shared_from_this()));
  }

 private:
  using Response = http::response<http::string_body>;

  void DoRead() {
    parser_.emplace();
    LimitRequestParser(*parser_);
    stream_.expires_after(kRequestTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, std::size_t) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::error::connection_reset ||
        ec == net::error::eof) {
      Shutdown();
      return;
    }
    if (ec) {
      // Unparseable request or over the limits: answer 400 and close.
      http::status status = ec == http::error::header_limit || ec == http::error::body_limit
                                ? http::status::request_header_fields_too_large
                                : http::status::bad_request;
      Send(MakeResponse(status, 11, false,
                        JsonError(absl::StrCat("malformed HTTP request: ", ec.message()))));
      return;
    }
    Handle(parser_->release());
  }

  Response MakeResponse(http::status status, unsigned version, bool keep_alive, std::string body,
                        std::string_view content_type = "application/json") {
    Response res{status, version};
    res.set(http::field::server, "pushd");
    res.set(http::field::content_type, content_type);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  void Handle(http::request<http::string_body> req) {
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    auto reply = [&](http::status status, std::string body,
                     std::string_view type = "application/json") {
      Send(MakeResponse(status, version, keep_alive, std::move(body), type));
    };
    absl::StatusOr<RequestTarget> target = ParseRequestTarget(req.target());
    if (!target.ok()) {
      reply(http::status::bad_request, JsonError(ToStd(target.status().message())));
      return;
    }
    const std::string& path = target->path;
    const http::verb method = req.method();

    if (bool compat; IsUpgradePath(path, &compat)) {
      Upgrade(std::move(req), *target, compat);
      return;
    }
    if (path == "/healthz" && method == http::verb::get) {
      reply(http::status::ok, "ok\n", "text/plain");
    } else if (path == "/readyz" && method == http::verb::get) {
      if (server_.Ready()) {
        reply(http::status::ok, "ready\n", "text/plain");
      } else {
        reply(http::status::service_unavailable, "not ready\n", "text/plain");
      }
    } else if (path == "/metrics" && method == http::verb::get) {
      reply(http::status::ok, GlobalMetrics().RenderPrometheus(),
            "text/plain; version=0.0.4; charset=utf-8");
    } else if (path.rfind("/deleteClient/", 0) == 0 && method == http::verb::delete_) {
      if (const ApiKey* key = server_.options.api_key) {
        auto auth = req.find(http::field::authorization);
        if (auth == req.end() || !key->Check(auth->value())) {
          reply(http::status::unauthorized,
                JsonError("missing or wrong API key: send Authorization: Bearer <key>"));
          return;
        }
      }
      std::string user = path.substr(std::string_view("/deleteClient/").size());
      if (absl::Status s = ValidateUserId(user); !s.ok()) {
        reply(http::status::bad_request, JsonError(ToStd(s.message())));
        return;
      }
      uint32_t closed = server_.hub->Close(user, "", kCloseNormal, "deleted");
      if (closed == 0) {
        reply(http::status::not_found, JsonError("client not found"));
      } else {
        reply(http::status::ok, absl::StrCat(R"({"closed":)", closed, "}"));
      }
    } else if (const WebAsset* asset = FindWebAsset(path); asset && method == http::verb::get) {
      // The demo page and the JavaScript client (GET / and GET /pushclient.js). Pages of other
      // origins may import the client (module scripts need CORS); revalidate after upgrades.
      Response res = MakeResponse(http::status::ok, version, keep_alive, std::string(asset->body),
                                  asset->content_type);
      res.set(http::field::cache_control, "no-cache");
      if (path != "/") res.set(http::field::access_control_allow_origin, "*");
      Send(std::move(res));
    } else if (path == "/demo/push" && method == http::verb::post) {
      // The demo page's push form, only in development (App sets demo_push with --auth=none
      // and no API key). The user is the user_id query parameter; the body is the pushed JSON.
      if (!server_.options.demo_push) {
        reply(http::status::not_found,
              JsonError("not found: /demo/push is on only with --auth=none and no API key"));
        return;
      }
      // Requiring the JSON type also keeps plain cross-site form posts out.
      auto type = req.find(http::field::content_type);
      if (type == req.end() || !beast::iequals(type->value().substr(0, 16), "application/json")) {
        reply(http::status::unsupported_media_type,
              JsonError("Content-Type must be application/json"));
        return;
      }
      const std::string* user = target->Param("user_id");
      if (user == nullptr) {
        reply(http::status::bad_request, JsonError("missing user_id query parameter"));
        return;
      }
      server_.options.demo_push(
          *user, std::move(req.body()),
          [self = shared_from_this(), version, keep_alive](int status, std::string body) {
            net::post(self->stream_.get_executor(),
                      [self, version, keep_alive, status, body = std::move(body)]() mutable {
                        self->Send(self->MakeResponse(static_cast<http::status>(status), version,
                                                      keep_alive, std::move(body)));
                      });
          });
    } else if (path == "/healthz" || path == "/readyz" || path == "/metrics" ||
               FindWebAsset(path) != nullptr || path == "/demo/push" ||
               path.rfind("/deleteClient/", 0) == 0) {
      reply(http::status::method_not_allowed, JsonError("method not allowed"));
    } else {
      reply(http::status::not_found, JsonError("not found"));
    }
  }

  void Upgrade(http::request<http::string_body> req, const RequestTarget& target, bool compat) {
    const unsigned version = req.version();
    absl::StatusOr<UpgradeRequest> upgrade =
        CheckUpgrade(req, target, compat, server_.options, server_.Ready());
    if (!upgrade.ok()) {
      http::status status = UpgradeRefusalStatus(upgrade.status());
      Response res =
          MakeResponse(status, version, false, JsonError(ToStd(upgrade.status().message())));
      if (status == http::status::unauthorized) {
        res.set(http::field::www_authenticate, R"(Bearer error="invalid_token")");
      }
      Send(std::move(res));
      return;
    }
    SessionParams params;
    params.compat = compat;
    params.ack = upgrade->ack;
    params.since = upgrade->since;
    params.token_valid_until = upgrade->token_valid_until;
    params.info.user_id = std::move(upgrade->user_id);
    params.info.user_agent = std::move(upgrade->user_agent);
    params.info.connection_id = NewConnectionId();
    params.info.connected_at = absl::Now();
    beast::error_code ec;
    tcp::endpoint remote = stream_.socket().remote_endpoint(ec);
    if (!ec) {
      params.info.remote_address =
          remote.address().is_v6()
              ? absl::StrCat("[", remote.address().to_string(), "]:", remote.port())
              : absl::StrCat(remote.address().to_string(), ":", remote.port());
    }
    std::make_shared<WebSocketSession>(stream_.release_socket(), std::move(params), server_.options,
                                       server_.store, server_.hub, &server_.open_sessions)
        ->Run(std::move(req));
  }

  void Send(Response res) {
    response_.emplace(std::move(res));
    http::async_write(stream_, *response_,
                      beast::bind_front_handler(&HttpSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, std::size_t) {
    bool keep_alive = response_->keep_alive();
    response_.reset();
    if (ec || !keep_alive) {
      Shutdown();
      return;
    }
    DoRead();
  }

  void Shutdown() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  EdgeServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<RequestParser> parser_;
  std::optional<Response> response_;
};

// ---- Listener --------------------------------------------------------------------------------

void EdgeServer::Impl::DoAccept() {
  acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !accepting.load()) return;
    if (ec) {
      // Out of file descriptors and the like: back off instead of spinning.
      spdlog::warn("accept failed: {}", ec.message());
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && accepting.load()) DoAccept();
      });
      return;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::make_shared<HttpSession>(std::move(socket), *this)->Run();
    DoAccept();
  });
}

EdgeServer::EdgeServer(EdgeOptions options, store::Store* store, Hub* hub)
    : impl_(std::make_unique<Impl>(std::move(options), store, hub)) {}

EdgeServer::~EdgeServer() { Stop(); }

absl::Status EdgeServer::Start() {
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
  while (impl_->open_sessions.load() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  return impl_->open_sessions.load();
}

void EdgeServer::Stop() {
  if (impl_->threads.empty()) return;
  impl_->work.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  // Sessions still registered (past the drain deadline) must not outlive the io_context their
  // sockets belong to: drop the hub's references; the io_context's destructor frees the rest.
  for (const auto& c : impl_->hub->All()) impl_->hub->Remove(*c);
}

}  // namespace push::edge
