#include "common/redis/redis_backend.h"

#include "common/delivery/hub.h"
#include "common/redis/cluster_client.h"
#include "common/redis/redis_client.h"
#include "common/redis/redis_directory.h"
#include "common/redis/redis_presence.h"
#include "common/redis/redis_store.h"
#include "common/redis/router.h"
#include "common/redis/subscriber.h"
#include "spdlog/spdlog.h"

namespace push {

RedisBackend::RedisBackend(RedisBackendOptions options, Hub* hub)
    : options_(std::move(options)), instance_(RedisDirectory::MakeInstance(options_.node_id)) {
  const bool edge = options_.edge;
  const bool cluster = !options_.cluster_seeds.empty();
  std::vector<std::string> scripts = store::RedisStore::Scripts();
  for (std::string& s : RedisDirectory::Scripts()) scripts.push_back(std::move(s));
  if (options_.presence) {
    for (std::string& s : RedisPresence::Scripts()) scripts.push_back(std::move(s));
  }
  // The presence tail blocks in XREAD for this long: its link waits longer for an answer.
  const absl::Duration tail_block = absl::Seconds(2);

  const int wait = static_cast<int>(options_.wait_replicas);
  if (cluster) {
    auto make = [&](const char* name) {
      redis::ClusterOptions o;
      o.seeds = options_.cluster_seeds;
      o.user = options_.endpoint.user;
      o.password = options_.endpoint.password;
      o.name = name;
      o.scripts = scripts;
      return o;
    };
    redis::ClusterOptions o = make("cluster");
    o.on_up_changed = [this, edge](bool up) {
      if (up && edge) directory_->OnCommandsUp();
      if (up && presence_) presence_->OnCommandsUp();
      LinksChanged();
    };
    o.on_map_changed = [this] {
      if (subscriber_) subscriber_->OnMapChanged();
    };
    cluster_ = std::make_unique<redis::ClusterClient>(std::move(o));
    if (wait > 0) {
      redis::ClusterOptions d = make("appends");
      d.wait_replicas = wait;
      d.on_up_changed = [this](bool) { LinksChanged(); };
      durable_cluster_ = std::make_unique<redis::ClusterClient>(std::move(d));
    }
    router_ = std::make_unique<redis::ClusterRouter>(cluster_.get(), durable_cluster_.get());
    if (options_.feed != nullptr) {
      redis::ClusterOptions t;
      t.seeds = options_.cluster_seeds;
      t.user = options_.endpoint.user;
      t.password = options_.endpoint.password;
      t.name = "presence-tail";
      t.command_timeout = tail_block + absl::Seconds(3);
      tail_cluster_ = std::make_unique<redis::ClusterClient>(std::move(t));
      tail_router_ = std::make_unique<redis::ClusterRouter>(tail_cluster_.get());
    }
  } else {
    redis::ConnectionOptions o;
    o.endpoint = options_.endpoint;
    o.name = "commands";
    o.scripts = scripts;
    o.on_connect = [this, edge] {
      if (edge) directory_->OnCommandsUp();
      if (presence_) presence_->OnCommandsUp();
      LinksChanged();
    };
    o.on_disconnect = [this] { LinksChanged(); };
    commands_ = std::make_unique<redis::Connection>(std::move(o));
    if (wait > 0) {
      redis::ConnectionOptions d;
      d.endpoint = options_.endpoint;
      d.name = "appends";
      d.scripts = scripts;
      d.wait_replicas = wait;
      // An append may wait for the WAIT before its own and then for its own.
      d.command_timeout = 2 * d.wait_timeout + absl::Seconds(2);
      d.on_connect = [this] { LinksChanged(); };
      d.on_disconnect = [this] { LinksChanged(); };
      durable_ = std::make_unique<redis::Connection>(std::move(d));
    }
    router_ = std::make_unique<redis::ConnectionRouter>(commands_.get(), durable_.get());
    if (options_.feed != nullptr) {
      redis::ConnectionOptions t;
      t.endpoint = options_.endpoint;
      t.name = "presence-tail";
      t.command_timeout = tail_block + absl::Seconds(3);
      tail_ = std::make_unique<redis::Connection>(std::move(t));
      tail_router_ = std::make_unique<redis::ConnectionRouter>(tail_.get());
    }
  }

  store::RedisStoreOptions store_options;
  store_options.history_size = options_.history_size;
  store_options.devices = {options_.device_ttl, options_.max_devices_per_user};
  store_options.wait_replicas = options_.wait_replicas > 0;
  store_ = std::make_unique<store::RedisStore>(store_options, router_.get());
  if (edge) {
    redis::SubscriberOptions s;
    s.endpoint = options_.endpoint;
    s.cluster = cluster_.get();
    s.name = "subscriber";
    s.on_message = [store = store_.get()](std::string_view, std::string_view payload) {
      store->OnChannelMessage(payload);
    };
    s.on_subscribed = [this](std::string_view channel) { directory_->OnSubscribed(channel); };
    s.on_links_changed = [this] { LinksChanged(); };
    subscriber_ = std::make_unique<redis::Subscriber>(std::move(s));
  }
  directory_ = std::make_unique<RedisDirectory>(options_.node_id, instance_, router_.get(),
                                                subscriber_.get(), hub);
  if (options_.presence) {
    RedisPresenceOptions p;
    p.node_id = options_.node_id;
    p.instance = instance_;
    p.offline_delay = options_.presence_offline_delay;
    p.retention = options_.presence_retention;
    p.block = tail_block;
    presence_ = std::make_unique<RedisPresence>(std::move(p), router_.get(), tail_router_.get(),
                                                options_.feed, edge ? hub : nullptr);
  }
  if (!edge) return;
  // Presence follows the hub; what the append scripts publish on the users' channels goes to
  // the store, which hands messages to its sink (the hub) and close commands to the directory.
  hub->AddObserver(directory_.get());
  if (presence_) hub->AddObserver(presence_.get());
  store_->SetCloseCommandHandler(
      [directory = directory_.get()](const redis_schema::CloseCommand& command) {
        directory->OnCloseCommand(command);
      });
}

RedisBackend::~RedisBackend() { Stop(); }

bool RedisBackend::up() const {
  bool commands = cluster_ ? cluster_->up() : commands_->connected();
  bool durable = durable_cluster_ ? durable_cluster_->up()
                 : durable_       ? durable_->connected()
                                  : true;
  return commands && durable && (subscriber_ == nullptr || subscriber_->up());
}

bool RedisBackend::Flush(absl::Duration timeout) {
  // Half the time for the cursor moves (a few scripts, normally answered in a millisecond), the
  // rest for the presence reports.
  absl::Time deadline = absl::Now() + timeout;
  bool cursors = store_->FlushCursors(timeout / 2);
  return (presence_ == nullptr || presence_->Flush(deadline - absl::Now())) && cursors;
}

void RedisBackend::LinksChanged() {
  if (options_.on_links_changed) options_.on_links_changed();
}

void RedisBackend::TickLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&tick_mu_);
      tick_mu_.AwaitWithTimeout(absl::Condition(&stop_ticking_), absl::Seconds(1));
      if (stop_ticking_) return;
    }
    if (options_.edge) directory_->OnTick();
    if (presence_) presence_->OnTick();
  }
}

absl::Status RedisBackend::Start(absl::Duration wait) {
  if (cluster_) {
    absl::Status s = cluster_->Start();
    if (s.code() == absl::StatusCode::kFailedPrecondition) return s;
    if (durable_cluster_) (void)durable_cluster_->Start();  // as the commands' client
    if (!s.ok()) {
      spdlog::warn("redis cluster: {}; not ready until a seed answers", std::string(s.message()));
    }
  } else {
    commands_->Start();
    if (durable_) durable_->Start();
  }
  if (subscriber_) subscriber_->Start();
  if (tail_cluster_) (void)tail_cluster_->Start();  // as the commands' client
  if (tail_) tail_->Start();
  if (presence_) presence_->Start();
  if (options_.edge || presence_) ticker_ = std::thread([this] { TickLoop(); });
  // Give the links a moment, so "ready" at start usually means ready.
  absl::Time give_up = absl::Now() + wait;
  while (!up() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(5));
  if (cluster_) {
    spdlog::info("redis cluster: {} shards, instance {}{}", cluster_->slot_map().shards().size(),
                 instance_, up() ? "" : " (not reachable yet: not ready until it is)");
  } else {
    if (!up()) {
      spdlog::warn("redis: not reachable yet at {}:{}; not ready until it is",
                   options_.endpoint.host, options_.endpoint.port);
    }
    spdlog::info("redis: {}:{} db {}, instance {}", options_.endpoint.host, options_.endpoint.port,
                 options_.endpoint.db, instance_);
  }
  return absl::OkStatus();
}

void RedisBackend::Stop() {
  {
    absl::MutexLock lock(&tick_mu_);
    stop_ticking_ = true;
  }
  if (ticker_.joinable()) ticker_.join();
  if (store_) store_->Stop();  // its last batch goes out before the connections stop
  if (presence_) presence_->Stop();
  if (tail_cluster_) tail_cluster_->Stop();
  if (tail_) tail_->Stop();
  if (subscriber_) subscriber_->Stop();
  if (durable_cluster_) durable_cluster_->Stop();
  if (cluster_) cluster_->Stop();
  if (durable_) durable_->Stop();
  if (commands_) commands_->Stop();
}

}  // namespace push
