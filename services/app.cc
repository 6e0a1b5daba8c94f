#include "services/app.h"

#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "common/auth/api_key.h"
#include "common/auth/jwt.h"
#include "common/base/http_status.h"
#include "common/base/limits.h"
#include "common/base/metrics.h"
#include "common/base/strings.h"
#include "common/delivery/directory.h"
#include "common/delivery/hub.h"
#include "common/delivery/memory_store.h"
#include "common/delivery/presence.h"
#include "common/json/json.h"
#include "common/redis/redis_backend.h"
#include "common/redis/redis_directory.h"
#include "common/redis/redis_presence.h"
#include "common/redis/redis_store.h"
#include "edge/edge_server.h"
#include "services/push_service.h"
#include "spdlog/spdlog.h"

namespace push {
namespace {

// Room for the other PushRequest fields on top of the largest allowed data, so an oversized
// `data` reaches our validation and gets INVALID_ARGUMENT with a clear message.
constexpr int kGrpcEnvelopeSlack = 16 * 1024;
constexpr absl::Duration kSweepInterval = absl::Seconds(1);
// OFFLINE falls due within this of --presence_offline_delay (embedded default).
constexpr absl::Duration kPresenceTick = absl::Milliseconds(100);
// Events the embedded presence log keeps at most (besides --presence_retention).
constexpr size_t kMemoryPresenceEvents = 262144;
constexpr absl::Duration kGrpcShutdownGrace = absl::Milliseconds(200);
constexpr absl::Duration kRedisStartWait = absl::Seconds(5);
// Going-away closes per second during a drain: a thousand browsers reconnect over two seconds,
// not in the same instant; a handful of connections close at once.
constexpr double kDrainCloseRate = 500;
// gRPC's own cap on request size. Over --max_message_bytes our validation answers
// INVALID_ARGUMENT with the limit; gRPC's RESOURCE_EXHAUSTED only starts past this.
constexpr int kMinGrpcReceiveBytes = 4 << 20;
// Keepalive: the server pings an idle client connection every kGrpcKeepaliveTime and drops it
// when no answer comes within kGrpcKeepaliveTimeout (dead peers behind NATs and load balancers).
// Clients may ping too, idle or not, but no more often than every kGrpcMinClientPingInterval;
// past kGrpcMaxPingStrikes pings that come too soon, the server sends GOAWAY (too_many_pings)
// and closes the connection.
constexpr int kGrpcKeepaliveTimeMs = 60'000;
constexpr int kGrpcKeepaliveTimeoutMs = 20'000;
constexpr int kGrpcMinClientPingIntervalMs = 10'000;
constexpr int kGrpcMaxPingStrikes = 2;
// The plugin name of gRPC's server reflection.
constexpr const char* kReflectionPlugin = "proto_server_reflection";

// Removes server reflection from one ServerBuilder. Linking grpc++_reflection registers its
// plugin for every builder at static initialization, so leaving it out takes this option.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    std::erase_if(*plugins, [](const auto& p) { return p->name() == kReflectionPlugin; });
  }
};

}  // namespace

App::App(Config config) : config_(std::move(config)) {}

App::~App() {
  {
    absl::MutexLock lock(&sweep_mu_);
    stop_sweeping_ = true;
  }
  if (sweeper_.joinable()) sweeper_.join();
  if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now());
  if (edge_) edge_->Stop();
  // The Redis threads call into the hub and directory: stop them before those go.
  if (redis_) redis_->Stop();
  // Last: a store callback (the Redis threads' last answers) may still finish a call on them.
  if (service_) service_->Stop();
}

void App::UpdateReady() {
  // Both Redis threads and the main thread come here: one at a time, so the last event wins.
  absl::MutexLock lock(&ready_mu_);
  bool redis_up = redis_ == nullptr || redis_->up();
  bool ready = started_.load() && !draining_.load() && redis_up;
  ready_.store(ready);
  // gRPC health follows (grpc_server_ is set before started_, and never changes after).
  if (started_.load() && grpc_server_) {
    service_->SetServing(ready);
  }
  if (redis_ != nullptr) GlobalMetrics().redis_up.store(redis_up ? 1 : 0);
}

absl::Status App::StartRedis() {
  RedisBackendOptions options;
  if (!config_.redis_cluster.empty()) {
    absl::StatusOr<std::vector<redis::Endpoint>> seeds = redis::ParseSeeds(config_.redis_cluster);
    if (!seeds.ok()) return seeds.status();
    options.cluster_seeds = *std::move(seeds);
  } else {
    absl::StatusOr<redis::Endpoint> endpoint = redis::ParseUrl(config_.redis);
    if (!endpoint.ok()) return endpoint.status();
    options.endpoint = *endpoint;
  }
  // The credentials of every connection (a cluster's: whichever node the map names).
  if (!config_.redis_password.empty()) {
    options.endpoint.user = config_.redis_user;
    options.endpoint.password = config_.redis_password;
  }
  options.node_id = config_.node_id;
  options.history_size = config_.history_size;
  options.device_ttl = config_.device_ttl;
  options.max_devices_per_user = config_.max_devices_per_user;
  options.wait_replicas = config_.redis_wait_replicas;
  options.edge = config_.role != Role::kApi;
  options.on_links_changed = [this] { UpdateReady(); };
  // Presence: the log is in Redis; the feed holds the newest events for this process's
  // watchers, twice the lag at which one is dropped (so a watcher within it reads memory only).
  if (config_.role != Role::kEdge) {
    presence::Feed::Options feed_options;
    feed_options.capacity = std::max<size_t>(4096, 2 * config_.presence_max_lag);
    feed_options.retention = config_.presence_retention;
    feed_ = std::make_unique<presence::Feed>(feed_options);
  }
  options.presence = true;
  options.feed = feed_.get();
  options.presence_offline_delay = config_.presence_offline_delay;
  options.presence_retention = config_.presence_retention;
  redis_ = std::make_unique<RedisBackend>(std::move(options), hub_.get());
  store_ = redis_->store();
  directory_ = redis_->directory();
  store_->SetPublicationSink(hub_.get());  // before the subscriber starts
  UpdateReady();
  return redis_->Start(kRedisStartWait);
}

int App::ws_port() const { return edge_ ? edge_->port() : 0; }

absl::Status App::Start() {
  GlobalMetrics().version = PUSHD_VERSION;
  GlobalMetrics().role = config_.role == Role::kApi    ? "api"
                         : config_.role == Role::kEdge ? "edge"
                                                       : "all";
  hub_ = std::make_unique<Hub>();
  // One publication path: whatever the backend, the store hands new messages to the hub (the
  // memory store after its append, Redis's from the subscriber link).
  const bool cluster = !config_.redis_cluster.empty();
  if (config_.redis.empty() && !cluster) {
    store::MemoryStoreOptions store_options;
    store_options.history_size = config_.history_size;
    store_options.max_bytes = config_.max_store_bytes;
    store_options.devices = {config_.device_ttl, config_.max_devices_per_user};
    memory_store_ = std::make_unique<store::MemoryStore>(store_options);
    local_directory_ = std::make_unique<LocalDirectory>(hub_.get(), config_.node_id);
    store_ = memory_store_.get();
    directory_ = local_directory_.get();
    store_->SetPublicationSink(hub_.get());
    presence::Feed::Options feed_options;
    feed_options.capacity = std::max<size_t>(kMemoryPresenceEvents, 4 * config_.presence_max_lag);
    feed_options.retention = config_.presence_retention;
    feed_ = std::make_unique<presence::Feed>(feed_options);
    memory_presence_ = std::make_unique<presence::MemoryPresence>(
        config_.node_id, config_.presence_offline_delay, feed_.get());
    hub_->AddObserver(memory_presence_.get());
  } else if (absl::Status s = StartRedis(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(cluster ? "--redis_cluster: " : "--redis: ", s.message()));
  }

  service::PushOptions push_options;
  push_options.max_message_bytes = config_.max_message_bytes;
  push_options.history_ttl = config_.history_ttl;
  push_options.node_id = config_.node_id;
  logic_ = std::make_unique<service::PushLogic>(push_options, store_, directory_);
  if (!config_.api_key_file.empty()) {
    api_key_ = std::make_unique<ApiKey>(config_.api_key_file);
    if (absl::Status s = api_key_->Load(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--api_key_file: ", s.message()));
    }
  }
  service_ = std::make_unique<service::PushServiceImpl>(logic_.get(), api_key_.get(),
                                                        config_.grpc_default_deadline);
  if (memory_presence_) {
    service_->SetPresence(feed_.get(), memory_presence_.get(), config_.presence_max_lag);
  } else if (redis_ != nullptr && redis_->presence() != nullptr) {
    service_->SetPresence(feed_.get(), redis_->presence(), config_.presence_max_lag);
  }

  if (config_.role != Role::kEdge) {
    // grpc.health.v1 is served by PushServiceImpl on its own queues (gRPC's built-in one would
    // bring the callback API's threads back).
    grpc::EnableDefaultHealthCheckService(false);
    grpc::ServerBuilder builder;
    if (config_.grpc_reflection) {
      grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    } else {
      builder.SetOption(std::make_unique<WithoutReflection>());
    }
    std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
    if (!config_.tls_cert_pem.empty()) {
      grpc::SslServerCredentialsOptions tls;
      tls.pem_key_cert_pairs.push_back({config_.tls_key_pem, config_.tls_cert_pem});
      credentials = grpc::SslServerCredentials(tls);
    }
    builder.AddListeningPort(config_.grpc_listen, credentials, &grpc_port_);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, kGrpcKeepaliveTimeMs);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kGrpcKeepaliveTimeoutMs);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA,
                               0);  // keep probing idle peers
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                               kGrpcMinClientPingIntervalMs);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, kGrpcMaxPingStrikes);
    builder.SetMaxReceiveMessageSize(std::max(
        kMinGrpcReceiveBytes, static_cast<int>(config_.max_message_bytes) + kGrpcEnvelopeSlack));
    // Half the cores by default: the edge's threads and the kernel's network work need the rest,
    // and on two cores one queue thread costs less CPU per push than two (BENCHMARKS.md).
    int threads = config_.grpc_threads > 0
                      ? config_.grpc_threads
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / 2));
    service_->Register(&builder, threads);
    grpc_server_ = builder.BuildAndStart();
    if (!grpc_server_ || grpc_port_ == 0) {
      return absl::UnavailableError(
          absl::StrCat("--grpc_listen=", config_.grpc_listen, ": cannot listen"));
    }
    service_->Start();
  }

  if (config_.role != Role::kApi) {
    edge::EdgeOptions edge_options;
    edge_options.listen = config_.ws_listen;
    edge_options.threads =
        config_.edge_threads > 0
            ? config_.edge_threads
            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    edge_options.ping_interval = config_.ping_interval;
    edge_options.pong_timeout = config_.pong_timeout;
    edge_options.send_queue_bytes = config_.send_queue_bytes;
    edge_options.max_queued_bytes = config_.max_queued_bytes;
    edge_options.allowed_origins = config_.allowed_origins;
    edge_options.max_connections_per_user = config_.max_connections_per_user;
    edge_options.max_connections = config_.max_connections;
    edge_options.max_request_header_bytes = config_.max_request_header_bytes;
    edge_options.handshake_timeout = config_.handshake_timeout;
    if (config_.auth == "jwt") {
      JwtOptions jwt_options;
      jwt_options.hs256_secret = config_.jwt_hs256_secret;
      jwt_options.rs256_public_key_pem = config_.jwt_rs256_public_key;
      jwt_options.leeway = config_.jwt_leeway;
      absl::StatusOr<std::unique_ptr<JwtVerifier>> jwt = JwtVerifier::Create(jwt_options);
      if (!jwt.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("--auth=jwt: ", jwt.status().message()));
      }
      edge_options.jwt = std::move(*jwt);
    }
    edge_options.tls_cert_pem = config_.tls_cert_pem;
    edge_options.tls_key_pem = config_.tls_key_pem;
    edge_options.ready = &ready_;
    edge_options.directory = directory_;
    edge_options.api_key = api_key_.get();
    if (config_.auth == "none" && config_.api_key_file.empty()) {
      edge_options.demo_push = [this](std::string user_id, std::string data,
                                      std::function<void(int, std::string)> done) {
        DemoPush(std::move(user_id), std::move(data), std::move(done));
      };
    }
    edge_ = std::make_unique<edge::EdgeServer>(edge_options, store_, hub_.get());
    if (absl::Status s = edge_->Start(); !s.ok()) return s;
  }

  sweeper_ = std::thread([this] { SweepLoop(); });
  started_.store(true);
  UpdateReady();
  return absl::OkStatus();
}

void App::DemoPush(std::string user_id, std::string data,
                   std::function<void(int, std::string)> done) {
  auto request = std::make_shared<v1::PushRequest>();
  request->set_user_id(std::move(user_id));
  request->set_data(std::move(data));
  auto response = std::make_shared<v1::PushResponse>();
  logic_->Push(*request, response.get(),
               [request, response, done = std::move(done)](absl::Status status) {
                 if (!status.ok()) {
                   std::string body = R"({"error":)";
                   AppendJsonString(&body, ToStd(status.message()));
                   body.push_back('}');
                   done(HttpStatusOf(status), std::move(body));
                   return;
                 }
                 std::string body = R"({"message_id":)";
                 AppendJsonString(&body, response->message_id());
                 absl::StrAppend(&body, R"(,"seq":)", response->seq(), R"(,"delivered":)",
                                 response->delivered(), "}");
                 done(200, std::move(body));
               });
}

void App::ReloadApiKey() {
  if (!api_key_) return;
  if (absl::Status s = api_key_->Load(); !s.ok()) {
    spdlog::error("API key reload failed, the old key stays: {}", ToStd(s.message()));
  } else {
    spdlog::info("API key reloaded from {}", api_key_->path());
  }
}

void App::SweepLoop() {
  absl::MutexLock lock(&sweep_mu_);
  absl::Time next_sweep = absl::Now() + kSweepInterval;
  while (!stop_sweeping_) {
    sweep_mu_.AwaitWithTimeout(absl::Condition(&stop_sweeping_), kPresenceTick);
    if (stop_sweeping_) break;
    sweep_mu_.Unlock();
    if (memory_presence_) memory_presence_->Tick();
    if (absl::Now() >= next_sweep) {
      next_sweep = absl::Now() + kSweepInterval;
      if (memory_store_) memory_store_->Sweep();
      FlushLimitLogs();
    }
    sweep_mu_.Lock();
  }
}

void App::Drain() {
  absl::Time deadline = absl::Now() + config_.drain_timeout;
  spdlog::info("draining: up to {}", absl::FormatDuration(config_.drain_timeout));
  // 1. Refuse new work: readiness off, Push answers UNAVAILABLE, no new WebSockets.
  draining_.store(true);
  UpdateReady();
  logic_->SetDraining();
  service_->EndWatches();  // UNAVAILABLE with the cursor to resume after on another instance
  if (edge_) edge_->StopAccepting();
  if (grpc_server_) {
    service_->SetServing(false);
  }
  // 2. Let RPCs already running finish, so what they stored reaches the sessions' queues.
  while (service_->inflight() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  // 3. Close every WebSocket with 1001 after writing what is queued for it.
  if (edge_) {
    // At most kDrainCloseRate closes a second, and within the first half of the drain window.
    int64_t open = hub_->size();
    absl::Duration spread = std::min(config_.drain_timeout / 2,
                                     absl::Seconds(static_cast<double>(open) / kDrainCloseRate));
    int64_t left = edge_->CloseAll(kCloseGoingAway, "server shutting down", deadline, spread);
    if (left > 0) spdlog::warn("drain: {} connections still open at the deadline", left);
  }
  // 4. Stop gRPC. Pushes that came in since step 1 were refused at once (other calls were
  // served); the short grace lets their answers out. (gRPC's own Shutdown(deadline) would wait for
  // idle client channels too.)
  if (grpc_server_) {
    grpc_server_->Shutdown(
        absl::ToChronoTime(std::min(deadline, absl::Now() + kGrpcShutdownGrace)));
  }
  if (edge_) edge_->Stop();
  // The closes' cursor moves and DISCONNECTED reports reach Redis before this process goes.
  if (redis_ != nullptr && !redis_->Flush(absl::Seconds(2))) {
    spdlog::warn("drain: cursor moves or presence reports not all written to Redis");
  }
  // Leave ListClients at once rather than when the heartbeat expires.
  if (redis_ != nullptr && config_.role != Role::kApi) {
    redis_->directory()->Goodbye(absl::Seconds(2));
  }
  spdlog::info("drained");
}

}  // namespace push
