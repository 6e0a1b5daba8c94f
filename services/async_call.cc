#include "services/async_call.h"

#include <algorithm>

#include "spdlog/spdlog.h"

namespace push::service {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

void QueueThreads::Add(grpc::ServerBuilder* builder, int count) {
  for (int i = 0; i < std::max(1, count); ++i) queues_.push_back(builder->AddCompletionQueue());
}

void QueueThreads::Start() {
  for (auto& queue : queues_) {
    threads_.emplace_back([q = queue.get()] {
      void* tag;
      bool ok;
      while (q->Next(&tag, &ok)) static_cast<Tag*>(tag)->Run(ok);
    });
  }
}

void QueueThreads::Stop(absl::Duration wait) {
  if (queues_.empty()) return;
  absl::Time deadline = absl::Now() + wait;
  while (!threads_.empty() && live_.load(std::memory_order_acquire) > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  if (int64_t left = live_.load(); left > 0 && !threads_.empty()) {
    spdlog::warn("grpc: {} calls still alive when the completion queues shut down", left);
  }
  for (auto& queue : queues_) queue->Shutdown();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  // Nothing is left in a queue that returned false from Next; before Start, drain it here.
  for (auto& queue : queues_) {
    void* tag;
    bool ok;
    while (queue->Next(&tag, &ok)) static_cast<Tag*>(tag)->Run(ok);
  }
  queues_.clear();
}

}  // namespace push::service
