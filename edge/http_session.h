#pragma once

// Internal to edge/: one HTTP connection, plain (beast::tcp_stream) or TLS (see tls_session.cc).
// A template so that a plain connection carries nothing of TLS; instantiated by edge_server.cc
// and tls_session.cc.

#include <boost/asio/dispatch.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/http_status.h"
#include "common/base/ids.h"
#include "common/base/limits.h"
#include "common/base/metrics.h"
#include "common/base/strings.h"
#include "common/json/json.h"
#include "edge/demo_page.h"
#include "edge/edge_internal.h"
#include "edge/http_query.h"
#include "edge/upgrade_request.h"
#include "edge/websocket_session.h"
#include "spdlog/spdlog.h"

namespace push::edge {

// The TLS goodbye (close_notify) sent when closing may wait this long for the peer's.
inline constexpr auto kTlsShutdownTimeout = std::chrono::seconds(2);

// ---- HTTP ------------------------------------------------------------------------------------

// Reads HTTP requests on one connection: answers health, metrics, admin and the demo page, and
// hands WebSocket upgrades of /ws and /getPushNews over to a WebSocketSession. `Stream` is
// beast::tcp_stream, or a TLS stream over one (whose handshake Run performs first).
template <class Stream>
class HttpSession : public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  // `args` construct the stream: the accepted socket, and the TLS context for TLS.
  template <class... Args>
  explicit HttpSession(EdgeServer::Impl& server, Args&&... args)
      : stream_(std::forward<Args>(args)...), server_(server) {
    server_.counters.sockets.fetch_add(1, std::memory_order_relaxed);
  }
  ~HttpSession() { server_.counters.sockets.fetch_sub(1, std::memory_order_relaxed); }

  void Run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpSession::Start, this->shared_from_this()));
  }

 private:
  using Response = http::response<http::string_body>;

  void Start() {
    if constexpr (kTls) {
      // --handshake_timeout runs from the accept to the complete upgrade request, so the TLS
      // handshake is within it (a stalled handshake is a slowloris like any other).
      beast::get_lowest_layer(stream_).expires_after(
          absl::ToChronoNanoseconds(server_.options.handshake_timeout));
      stream_.async_handshake(
          Stream::server,  // dependent: edge_server.cc compiles without the SSL headers
          beast::bind_front_handler(&HttpSession::OnHandshake, this->shared_from_this()));
    } else {
      DoRead();
    }
  }

  void OnHandshake(beast::error_code ec) {
    if (ec) {
      // Plain text on the TLS port, a stalled or failed handshake: nothing to answer over TLS.
      if (ec == beast::error::timeout) RecordLimitHit(Limit::kHandshakeTimeout);
      GlobalMetrics().tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("TLS handshake failed: {}", ec.message());
      CloseNow();
      return;
    }
    DoRead();
  }

  void DoRead() {
    parser_.emplace();
    LimitRequestParser(*parser_, server_.options.max_request_header_bytes);
    // A deadline for the whole request, not an idle timer: a client trickling bytes (slowloris)
    // is cut at it like one that sends nothing. The first one runs from the accept (for TLS,
    // from before the handshake: Start set it).
    if (!kTls || served_) {
      beast::get_lowest_layer(stream_).expires_after(
          absl::ToChronoNanoseconds(server_.options.handshake_timeout));
    }
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::OnRead, this->shared_from_this()));
  }

  void OnRead(beast::error_code ec, std::size_t) {
    // An idle keep-alive connection timing out between requests is no limit hit.
    if (ec == beast::error::timeout && (!served_ || parser_->got_some() || buffer_.size() > 0)) {
      RecordLimitHit(Limit::kHandshakeTimeout);
    }
    // The peer left, timed out, or broke the transport (TLS errors included): nothing to answer.
    if (ec == http::error::end_of_stream ||
        (ec && ec.category() != make_error_code(http::error::end_of_stream).category())) {
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
      // Through the directory: with Redis the user's connections may be on any node.
      server_.options.directory->Close(
          user, "", kCloseNormal, "deleted",
          [self = this->shared_from_this(), version, keep_alive](absl::StatusOr<uint32_t> closed) {
            http::status status = !closed.ok()
                                      ? static_cast<http::status>(HttpStatusOf(closed.status()))
                                  : *closed == 0 ? http::status::not_found
                                                 : http::status::ok;
            std::string body = !closed.ok()   ? JsonError(ToStd(closed.status().message()))
                               : *closed == 0 ? JsonError("client not found")
                                              : absl::StrCat(R"({"closed":)", *closed, "}");
            net::post(self->stream_.get_executor(), [self, version, keep_alive, status,
                                                     body = std::move(body)]() mutable {
              self->Send(self->MakeResponse(status, version, keep_alive, std::move(body)));
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
          [self = this->shared_from_this(), version, keep_alive](int status, std::string body) {
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
    // The socket-free checks (also run by tests/fuzz/upgrade_fuzz.cc).
    absl::StatusOr<UpgradeRequest> upgrade =
        CheckUpgrade(req, target, compat, server_.options, server_.Ready());
    if (!upgrade.ok()) {
      http::status status = UpgradeRefusalStatus(upgrade.status());
      Response res =
          MakeResponse(status, version, false, JsonError(ToStd(upgrade.status().message())));
      if (status == http::status::unauthorized) {
        res.set(http::field::www_authenticate, R"(Bearer error="invalid_token")");
      } else if (status == http::status::upgrade_required) {
        res.set(http::field::sec_websocket_version, "13");  // the version we speak (RFC 6455 4.4)
      }
      Send(std::move(res));
      return;
    }
    SessionParams params;
    params.compat = compat;
    params.since = upgrade->since;
    params.ack = upgrade->ack;
    params.token_valid_until = upgrade->token_valid_until;
    std::string user = std::move(upgrade->user_id);
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
    tcp::endpoint remote = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    if (!ec) {
      params.info.remote_address =
          remote.address().is_v6()
              ? absl::StrCat("[", remote.address().to_string(), "]:", remote.port())
              : absl::StrCat(remote.address().to_string(), ":", remote.port());
    }
    params.info.user_agent = std::move(upgrade->user_agent);
    params.info.device_id = std::move(upgrade->device_id);
    // Bytes the client sent right behind its request, which the parser read with it, are the
    // WebSocket's first: they go with the connection.
    std::string early = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    if constexpr (kTls) {
      // The WebSocket layer keeps its own timeouts; the TLS stream moves over whole.
      beast::get_lowest_layer(stream_).expires_never();
      std::make_shared<WebSocketSession<Stream>>(std::move(stream_), std::move(params),
                                                 server_.options, server_.store, server_.hub,
                                                 &server_.counters, &server_.wheel)
          ->Run(std::move(req), std::move(early));
    } else {
      EdgeStream stream(stream_.release_socket());
      stream.SetEarlyBytes(std::move(early));
      std::make_shared<WebSocketSession<EdgeStream>>(std::move(stream), std::move(params),
                                                     server_.options, server_.store, server_.hub,
                                                     &server_.counters, &server_.wheel)
          ->Run(std::move(req));
    }
  }

  void Send(Response res) {
    response_.emplace(std::move(res));
    http::async_write(stream_, *response_,
                      beast::bind_front_handler(&HttpSession::OnWrite, this->shared_from_this()));
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

  // Ends the connection after a request/response (never during the TLS handshake: its failure
  // closes at once).
  void Shutdown() {
    if constexpr (kTls) {
      // Say goodbye at the TLS level (close_notify), bounded: a peer that never answers holds
      // the socket only until the timeout.
      beast::get_lowest_layer(stream_).expires_after(kTlsShutdownTimeout);
      stream_.async_shutdown(
          [self = this->shared_from_this()](beast::error_code) { self->CloseNow(); });
    } else {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      CloseNow();
    }
  }

  void CloseNow() {
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().close(ignored);
  }

  Stream stream_;
  EdgeServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<Response> response_;
  bool served_ = false;  // a response was written: a later timeout may be keep-alive idleness
};

}  // namespace push::edge
