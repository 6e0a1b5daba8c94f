#pragma once

#include <grpcpp/server_builder.h>

#include <atomic>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/async_call.h"

namespace push::service {

// grpc.health.v1.Health on pushd's completion queues (gRPC's built-in one runs on the callback
// API). Its services are "" (the server) and `service_names`; all follow one serving status, set
// by the process (ready or not). Check answers NOT_FOUND for another service name; Watch sends
// the status at once and again whenever it changes (SERVICE_UNKNOWN for another name).
class HealthService {
 public:
  explicit HealthService(std::vector<std::string> service_names);
  ~HealthService();

  // Before the builder's BuildAndStart.
  void Register(grpc::ServerBuilder* builder) { builder->RegisterService(&service_); }
  // After BuildAndStart: requests the first calls on each queue.
  void Listen(QueueThreads* queues);

  void SetServing(bool serving);

 private:
  class WatchCall;
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;
  Status StatusOf(const std::string& service) const;
  void AddWatcher(WatchCall* call);
  void RemoveWatcher(WatchCall* call);

  // Check raw, like pushd's own methods (ParseRequest in async_call.h); Watch typed.
  using Service = grpc::health::v1::Health::WithRawMethod_Check<
      grpc::health::v1::Health::WithAsyncMethod_Watch<grpc::health::v1::Health::Service>>;
  Service service_;
  const std::vector<std::string> names_;
  std::atomic<bool> serving_{true};
  QueueThreads* threads_ = nullptr;  // set by Listen
  UnaryMethod<grpc::health::v1::HealthCheckRequest, grpc::health::v1::HealthCheckResponse> check_;
  absl::Mutex mu_;
  absl::flat_hash_set<WatchCall*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace push::service
