#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/redis/cluster_client.h"
#include "common/redis/redis_client.h"

namespace push::redis {

// Where the store's and the directory's commands go: one Redis (--redis), or the primary that
// serves each command's hash slot in a Redis Cluster (--redis_cluster). Callers give the slot of
// the command's keys (redis_schema::UserSlot, InstanceSlot); one Redis ignores it.
class Router {
 public:
  virtual ~Router() = default;
  virtual void Command(uint16_t slot, std::vector<std::string> argv, Callback done) = 0;
  // Answered once --redis_wait_replicas replicas acknowledged it (Connection::Durable).
  virtual void Durable(uint16_t slot, std::vector<std::string> argv, Callback done) = 0;
  // A Redis Cluster: publish with SPUBLISH and subscribe with SSUBSCRIBE.
  virtual bool cluster() const = 0;
  // Which connection `slot`'s commands go to now: commands of slots with one shard may share a
  // script that reaches keys of several slots (flags=allow-cross-slot-keys). -1 when no shard
  // serves the slot (yet). One Redis: 0.
  virtual int ShardOf(uint16_t slot) const = 0;
};

// `durable` (when given) carries the Durable() commands: WAIT blocks the connection it is sent on
// until the replicas answer, so with --redis_wait_replicas the appends get connections of their
// own, and reads, cursors and presence never queue behind a WAIT.
class ConnectionRouter final : public Router {
 public:
  explicit ConnectionRouter(Connection* commands, Connection* durable = nullptr)
      : commands_(commands), durable_(durable != nullptr ? durable : commands) {}
  void Command(uint16_t, std::vector<std::string> argv, Callback done) override {
    commands_->Command(std::move(argv), std::move(done));
  }
  void Durable(uint16_t, std::vector<std::string> argv, Callback done) override {
    durable_->Durable(std::move(argv), std::move(done));
  }
  bool cluster() const override { return false; }
  int ShardOf(uint16_t) const override { return 0; }

 private:
  Connection* const commands_;
  Connection* const durable_;
};

class ClusterRouter final : public Router {
 public:
  explicit ClusterRouter(ClusterClient* commands, ClusterClient* durable = nullptr)
      : commands_(commands), durable_(durable != nullptr ? durable : commands) {}
  void Command(uint16_t slot, std::vector<std::string> argv, Callback done) override {
    commands_->Command(slot, std::move(argv), std::move(done));
  }
  void Durable(uint16_t slot, std::vector<std::string> argv, Callback done) override {
    durable_->Durable(slot, std::move(argv), std::move(done));
  }
  bool cluster() const override { return true; }
  int ShardOf(uint16_t slot) const override { return commands_->ShardOf(slot); }

 private:
  ClusterClient* const commands_;
  ClusterClient* const durable_;
};

}  // namespace push::redis
