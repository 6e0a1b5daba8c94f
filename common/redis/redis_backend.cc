#include "common/redis/redis_backend.h"

#include "common/delivery/hub.h"
#include "common/redis/redis_client.h"
#include "common/redis/redis_directory.h"
#include "common/redis/redis_store.h"
#include "spdlog/spdlog.h"

namespace push {

RedisBackend::RedisBackend(RedisBackendOptions options, Hub* hub)
    : options_(std::move(options)), instance_(RedisDirectory::MakeInstance(options_.node_id)) {
  const bool edge = options_.edge;
  redis::ConnectionOptions commands;
  commands.endpoint = options_.endpoint;
  commands.name = "commands";
  commands.scripts = store::RedisStore::Scripts();
  for (std::string& s : RedisDirectory::Scripts()) commands.scripts.push_back(std::move(s));
  commands.on_connect = [this, edge] {
    if (edge) directory_->OnCommandsConnected();
    LinkChanged(+1);
  };
  commands.on_disconnect = [this] { LinkChanged(-1); };
  if (edge) commands.on_tick = [this] { directory_->OnTick(); };
  commands_ = std::make_unique<redis::Connection>(std::move(commands));

  store::RedisStoreOptions store_options;
  store_options.history_size = options_.history_size;
  store_ = std::make_unique<store::RedisStore>(store_options, commands_.get());
  directory_ = std::make_unique<RedisDirectory>(options_.node_id, instance_, commands_.get(), hub);
  if (!edge) return;

  // Presence follows the hub; what the append scripts route to this instance goes to the store,
  // which hands messages to its sink (the hub) and close commands to the directory.
  hub->SetObserver(directory_.get());
  store_->SetCloseCommandHandler(
      [directory = directory_.get()](const redis_schema::CloseCommand& command) {
        directory->OnCloseCommand(command);
      });
  redis::ConnectionOptions subscriber;
  subscriber.endpoint = options_.endpoint;
  subscriber.name = "subscriber";
  subscriber.subscribe = {redis_schema::Channel(instance_)};
  subscriber.on_message = [store = store_.get()](std::string_view, std::string_view payload) {
    store->OnChannelMessage(payload);
  };
  subscriber.on_connect = [this] {
    directory_->OnSubscriberConnected();
    LinkChanged(+1);
  };
  subscriber.on_disconnect = [this] { LinkChanged(-1); };
  subscriber_ = std::make_unique<redis::Connection>(std::move(subscriber));
  links_needed_ = 2;
}

RedisBackend::~RedisBackend() { Stop(); }

void RedisBackend::LinkChanged(int delta) {
  links_up_.fetch_add(delta);
  if (options_.on_links_changed) options_.on_links_changed();
}

void RedisBackend::Start(absl::Duration wait) {
  commands_->Start();
  if (subscriber_) subscriber_->Start();
  // Give the links a moment, so "ready" at start usually means ready.
  absl::Time give_up = absl::Now() + wait;
  while (!up() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(5));
  if (!up()) {
    spdlog::warn("redis: not reachable yet at {}:{}; not ready until it is", options_.endpoint.host,
                 options_.endpoint.port);
  }
  spdlog::info("redis: {}:{} db {}, instance {}", options_.endpoint.host, options_.endpoint.port,
               options_.endpoint.db, instance_);
}

void RedisBackend::Stop() {
  if (subscriber_) subscriber_->Stop();
  if (commands_) commands_->Stop();
}

}  // namespace push
