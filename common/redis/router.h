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
};

class ConnectionRouter final : public Router {
 public:
  explicit ConnectionRouter(Connection* connection) : connection_(connection) {}
  void Command(uint16_t, std::vector<std::string> argv, Callback done) override {
    connection_->Command(std::move(argv), std::move(done));
  }
  void Durable(uint16_t, std::vector<std::string> argv, Callback done) override {
    connection_->Durable(std::move(argv), std::move(done));
  }
  bool cluster() const override { return false; }

 private:
  Connection* const connection_;
};

class ClusterRouter final : public Router {
 public:
  explicit ClusterRouter(ClusterClient* client) : client_(client) {}
  void Command(uint16_t slot, std::vector<std::string> argv, Callback done) override {
    client_->Command(slot, std::move(argv), std::move(done));
  }
  void Durable(uint16_t slot, std::vector<std::string> argv, Callback done) override {
    client_->Durable(slot, std::move(argv), std::move(done));
  }
  bool cluster() const override { return true; }

 private:
  ClusterClient* const client_;
};

}  // namespace push::redis
