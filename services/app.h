#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/config/config.h"

namespace grpc {
class Server;
}

namespace push {
class ApiKey;
class Directory;
class Hub;
class LocalDirectory;
class RedisBackend;
namespace presence {
class Feed;
class MemoryPresence;
}  // namespace presence
namespace store {
class MemoryStore;
class Store;
}  // namespace store
namespace edge {
class EdgeServer;
}
namespace service {
class PushLogic;
class PushServiceImpl;
}  // namespace service

// Wires the process together from a Config: store, hub, gRPC server and WebSocket edge.
class App {
 public:
  explicit App(Config config);
  ~App();

  // Binds the listeners and starts serving; readiness goes up when both listen.
  absl::Status Start();
  int grpc_port() const { return grpc_port_; }
  int ws_port() const;

  // Re-reads --api_key_file (SIGHUP), for key rotation without a restart.
  void ReloadApiKey();

  // Graceful drain: readiness off, stop accepting, finish in-flight RPCs, close WebSockets
  // with 1001, stop. Bounded by --drain_timeout.
  void Drain();

 private:
  void SweepLoop() ABSL_LOCKS_EXCLUDED(sweep_mu_);
  // Connects the Redis backend (--redis): its store, routing and presence.
  absl::Status StartRedis();
  // Readiness: started, not draining, and (with Redis) every Redis link up.
  void UpdateReady() ABSL_LOCKS_EXCLUDED(ready_mu_);
  // The demo page's push (development only): a Push through the same logic as gRPC.
  void DemoPush(std::string user_id, std::string data,
                std::function<void(int status, std::string body)> done);

  Config config_;
  absl::Mutex ready_mu_;  // one UpdateReady at a time
  std::atomic<bool> ready_{false};
  std::atomic<bool> started_{false};
  std::atomic<bool> draining_{false};
  std::unique_ptr<ApiKey> api_key_;
  std::unique_ptr<Hub> hub_;
  // The backend: the embedded store and this process's directory, or Redis (--redis).
  std::unique_ptr<store::MemoryStore> memory_store_;  // swept by SweepLoop
  std::unique_ptr<LocalDirectory> local_directory_;
  std::unique_ptr<RedisBackend> redis_;
  store::Store* store_ = nullptr;
  Directory* directory_ = nullptr;
  // Presence: the events this process's watchers read, and (embedded default) the log itself.
  std::unique_ptr<presence::Feed> feed_;
  std::unique_ptr<presence::MemoryPresence> memory_presence_;
  std::unique_ptr<service::PushLogic> logic_;
  std::unique_ptr<service::PushServiceImpl> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<edge::EdgeServer> edge_;
  int grpc_port_ = 0;

  absl::Mutex sweep_mu_;
  bool stop_sweeping_ ABSL_GUARDED_BY(sweep_mu_) = false;
  std::thread sweeper_;
};

}  // namespace push
