#include "edge/edge_server.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/http_query.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/limits.h"
#include "common/log_throttle.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "edge/demo_page.h"
#include "edge/websocket_session.h"
#include "spdlog/spdlog.h"

namespace push::edge {
namespace {

using tcp = net::ip::tcp;

constexpr size_t kMaxRequestBodyBytes = 4096;
constexpr size_t kMaxUserAgentBytes = 256;
// After a failed accept (out of descriptors, most often) before trying again: the failing
// connection stays in the listen queue, so retrying at once would spin.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);
constexpr absl::Duration kAcceptErrorLogInterval = absl::Seconds(10);

bool OutOfDescriptors(const beast::error_code& ec) {
  return ec == net::error::no_descriptors ||
         ec == boost::system::errc::too_many_files_open_in_system ||
         ec == net::error::no_buffer_space || ec == net::error::no_memory;
}

std::string JsonError(std::string_view message) {
  std::string out = R"({"error":)";
  AppendJsonString(&out, message);
  out.push_back('}');
  return out;
}

// The token of an upgrade: `Authorization: Bearer <t>` when that header is present, else the
// `token` query parameter (browsers cannot set headers on a WebSocket).
absl::StatusOr<std::string> BearerToken(const http::request<http::string_body>& req,
                                        const RequestTarget& target) {
  if (auto auth = req.find(http::field::authorization); auth != req.end()) {
    std::string_view value = auth->value();
    constexpr std::string_view kScheme = "bearer ";
    if (value.size() <= kScheme.size() ||
        !beast::iequals(value.substr(0, kScheme.size()), kScheme)) {
      return absl::UnauthenticatedError("Authorization must be: Bearer <token>");
    }
    value.remove_prefix(kScheme.size());
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    return std::string(value);
  }
  if (const std::string* token = target.Param("token")) return *token;
  return absl::UnauthenticatedError("missing token");
}

}  // namespace

struct EdgeServer::Impl {
  EdgeOptions options;
  store::Store* store;
  Hub* hub;
  // Before the io_context: sessions it destroys still count down.
  SessionCounters counters;
  // Accepted sockets beyond this are closed at once (max_connections plus HandshakeRoom).
  int64_t max_sockets;
  LogThrottle accept_error_log{kAcceptErrorLogInterval};
  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> work{ioc.get_executor()};
  std::optional<tcp::acceptor> acceptor;
  // The acceptor and its retry timer live on one strand: accept handlers and StopAccepting may
  // run on different I/O threads.
  net::strand<net::io_context::executor_type> accept_strand{net::make_strand(ioc)};
  net::steady_timer accept_retry{accept_strand};
  std::vector<std::thread> threads;
  std::atomic<bool> accepting{true};
  int port = 0;

  Impl(EdgeOptions o, store::Store* s, Hub* h)
      : options(std::move(o)),
        store(s),
        hub(h),
        max_sockets(options.max_connections == 0 ? std::numeric_limits<int64_t>::max()
                                                 : int64_t{options.max_connections} +
                                                       HandshakeRoom(options.max_connections)),
        ioc(std::max(1, options.threads)) {}

  bool Ready() const { return options.ready == nullptr || options.ready->load(); }
  void DoAccept();
  void OnAcceptError(const beast::error_code& ec);

  // Takes one of the --max_connections slots for a WebSocket; false when all are taken.
  bool TakeSlot() {
    int64_t before = counters.slots.fetch_add(1, std::memory_order_relaxed);
    if (options.max_connections == 0 || before < int64_t{options.max_connections}) return true;
    counters.slots.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
};

// ---- HTTP ------------------------------------------------------------------------------------

// Reads HTTP requests on one connection: answers health, metrics, admin and the demo page, and
// hands WebSocket upgrades of /ws and /getPushNews over to a WebSocketSession.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, EdgeServer::Impl& server)
      : stream_(std::move(socket)), server_(server) {
    server_.counters.sockets.fetch_add(1, std::memory_order_relaxed);
  }
  ~HttpSession() { server_.counters.sockets.fetch_sub(1, std::memory_order_relaxed); }

  void Run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpSession::DoRead, shared_from_this()));
  }

 private:
  using Response = http::response<http::string_body>;

  void DoRead() {
    parser_.emplace();
    parser_->header_limit(server_.options.max_request_header_bytes);
    parser_->body_limit(kMaxRequestBodyBytes);
    // A deadline for the whole request, not an idle timer: a client trickling bytes (slowloris)
    // is cut at it like one that sends nothing. The first one runs from the accept.
    stream_.expires_after(absl::ToChronoNanoseconds(server_.options.handshake_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, std::size_t) {
    // An idle keep-alive connection timing out between requests is no limit hit.
    if (ec == beast::error::timeout && (!served_ || parser_->got_some() || buffer_.size() > 0)) {
      RecordLimitHit(Limit::kHandshakeTimeout);
    }
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::error::connection_reset ||
        ec == net::error::eof) {
      Shutdown();
      return;
    }
    if (ec) {
      // Unparseable request or over the limits: answer and close.
      http::status status = http::status::bad_request;
      if (ec == http::error::header_limit) {
        RecordLimitHit(Limit::kRequestHeaderBytes);
        status = http::status::request_header_fields_too_large;
      } else if (ec == http::error::body_limit) {
        status = http::status::payload_too_large;
      }
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

    if (path == "/ws" || path == "/getPushNews") {
      Upgrade(std::move(req), *target, path == "/getPushNews");
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
      // Through the directory: with Redis the user's connections may be on any node.
      server_.options.directory->Close(
          user, "", kCloseNormal, "deleted",
          [self = shared_from_this(), version, keep_alive](absl::StatusOr<uint32_t> closed) {
            http::status status = !closed.ok()      ? http::status::service_unavailable
                                  : *closed == 0    ? http::status::not_found
                                                    : http::status::ok;
            std::string body = !closed.ok()   ? JsonError(ToStd(closed.status().message()))
                               : *closed == 0 ? JsonError("client not found")
                                              : absl::StrCat(R"({"closed":)", *closed, "}");
            net::post(self->stream_.get_executor(),
                      [self, version, keep_alive, status, body = std::move(body)]() mutable {
                        self->Send(self->MakeResponse(status, version, keep_alive,
                                                      std::move(body)));
                      });
          });
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
    auto reject = [&](http::status status, std::string_view why) {
      Send(MakeResponse(status, version, false, JsonError(why)));
    };
    if (req.method() != http::verb::get || !websocket::is_upgrade(req)) {
      reject(http::status::bad_request,
             "expected a WebSocket upgrade (GET with Connection: Upgrade, Upgrade: websocket)");
      return;
    }
    if (!server_.Ready()) {
      reject(http::status::service_unavailable, "server is not accepting connections");
      return;
    }
    if (!server_.options.allowed_origins.empty()) {
      auto origin = req.find(http::field::origin);
      if (origin != req.end()) {
        const auto& allowed = server_.options.allowed_origins;
        if (std::find(allowed.begin(), allowed.end(), origin->value()) == allowed.end()) {
          reject(http::status::forbidden, "origin not allowed");
          return;
        }
      }
    }
    SessionParams params;
    params.compat = compat;
    std::string user;
    if (const JwtVerifier* jwt = server_.options.jwt.get()) {
      // The token is the only source of the user: a user_id/userId in the query is ignored, so
      // it can never name someone else.
      absl::StatusOr<std::string> token = BearerToken(req, target);
      absl::StatusOr<JwtClaims> claims =
          token.ok() ? jwt->Verify(*token) : absl::StatusOr<JwtClaims>(token.status());
      if (!claims.ok()) {
        Response res = MakeResponse(http::status::unauthorized, version, false,
                                    JsonError(ToStd(claims.status().message())));
        res.set(http::field::www_authenticate, R"(Bearer error="invalid_token")");
        Send(std::move(res));
        return;
      }
      user = std::move(claims->user_id);
      params.token_valid_until = claims->valid_until;
    } else {
      const std::string* param = target.Param(compat ? "userId" : "user_id");
      if (param == nullptr) {
        reject(http::status::bad_request,
               compat ? "missing userId query parameter" : "missing user_id query parameter");
        return;
      }
      if (absl::Status s = ValidateUserId(*param); !s.ok()) {
        reject(http::status::bad_request, ToStd(s.message()));
        return;
      }
      user = *param;
    }
    if (const std::string* since = target.Param("since")) {
      uint64_t value = 0;
      if (!absl::SimpleAtoi(*since, &value)) {
        reject(http::status::bad_request, "since must be a non-negative integer (a seq)");
        return;
      }
      params.since = value;
    }
    if (const std::string* ack = target.Param("ack")) {
      if (*ack == "1" || *ack == "true") {
        params.ack = true;
      } else if (!(*ack == "0" || *ack == "false" || ack->empty())) {
        reject(http::status::bad_request, "ack must be 1 or 0");
        return;
      }
    }
    // The process limit first: when it is full, no user gets in.
    if (!server_.TakeSlot()) {
      RecordLimitHit(Limit::kConnections);
      reject(http::status::service_unavailable,
             absl::StrCat("server is at its connection limit (--max_connections=",
                          server_.options.max_connections, "): retry later"));
      return;
    }
    if (uint32_t limit = server_.options.max_connections_per_user; limit > 0) {
      if (!server_.hub->Reserve(user, limit)) {
        server_.counters.slots.fetch_sub(1, std::memory_order_relaxed);
        RecordLimitHit(Limit::kPerUser);
        reject(http::status::too_many_requests,
               absl::StrCat("too many connections for this user (at most ", limit,
                            "): close one first"));
        return;
      }
      params.user_slot = true;
    }
    params.info.user_id = std::move(user);
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
    if (auto ua = req.find(http::field::user_agent); ua != req.end()) {
      params.info.user_agent = std::string(ua->value().substr(0, kMaxUserAgentBytes));
    }
    std::make_shared<WebSocketSession>(stream_.release_socket(), std::move(params), server_.options,
                                       server_.store, server_.hub, &server_.counters)
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
    served_ = true;
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
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<Response> response_;
  bool served_ = false;  // a response was written: a later timeout may be keep-alive idleness
};

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
    std::make_shared<HttpSession>(std::move(socket), *this)->Run();
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
  while (impl_->counters.open_sessions.load() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  return impl_->counters.open_sessions.load();
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
