#include "services/async_call.h"

#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <mutex>
#include <string>

#include "common/base/prefaulted_heap.h"
#include "common/base/write_batch.h"
#include "spdlog/spdlog.h"

namespace push::service {

namespace {

thread_local std::string protobuf_error;

void OnProtobufLog(google::protobuf::LogLevel level, const char* file, int line,
                   const std::string& message) {
  if (level >= google::protobuf::LOGLEVEL_FATAL) {
    spdlog::critical("protobuf {}:{}: {}", file, line, message);
    return;
  }
  spdlog::debug("protobuf {}:{}: {}", file, line, message);
  protobuf_error = message;
}

}  // namespace

void RouteProtobufLogs() {
  static std::once_flag once;
  std::call_once(once, [] { google::protobuf::SetLogHandler(&OnProtobufLog); });
}

void ClearProtobufError() { protobuf_error.clear(); }

std::string TakeProtobufError() {
  std::string out = std::move(protobuf_error);
  protobuf_error.clear();
  // "String field 'push.v1.PushRequest.user_id' contains invalid UTF-8 data when parsing a
  // protocol buffer. Use the 'bytes' type if you intend to send raw bytes. ": the first sentence
  // says it; the advice is for the schema's author.
  if (size_t end = out.find(". "); end != std::string::npos) out.resize(end);
  return out;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

void QueueThreads::Serve(grpc::ServerCompletionQueue* queue) {
  // The events that are ready run as one burst under a WriteBatch: the frames, answers and
  // corked writes of their handlers go out when no event is ready (a poll that returns at once
  // says so) or after kBurstEvents events, whichever comes first. gRPC's own writes while it
  // polls are never corked.
  constexpr int kBurstEvents = 64;
  WriteBatch::Scope scope;
  WriteBatch& batch = scope.batch();
  void* tag;
  bool ok;
  int burst = 0;
  for (;;) {
    grpc::CompletionQueue::NextStatus status;
    if (burst == 0) {
      status = queue->Next(&tag, &ok) ? grpc::CompletionQueue::GOT_EVENT
                                      : grpc::CompletionQueue::SHUTDOWN;
    } else {
      status = queue->AsyncNext(&tag, &ok, gpr_inf_past(GPR_CLOCK_MONOTONIC));
    }
    if (status == grpc::CompletionQueue::SHUTDOWN) break;
    if (status == grpc::CompletionQueue::GOT_EVENT) {
      WriteBatch::Cork cork;
      static_cast<Tag*>(tag)->Run(ok);
    }
    // TIMEOUT (nothing ready), a full burst, or nothing to send: the burst ends.
    if (status == grpc::CompletionQueue::TIMEOUT || ++burst >= kBurstEvents || batch.empty()) {
      batch.Flush();
      burst = 0;
    }
  }
}

void QueueThreads::Add(grpc::ServerBuilder* builder, int count) {
  for (int i = 0; i < std::max(1, count); ++i) queues_.push_back(builder->AddCompletionQueue());
}

void QueueThreads::Start() {
  for (auto& queue : queues_) {
    threads_.emplace_back([q = queue.get()] {
      UsePrefaultedHeap();  // a push's allocations happen here (common/base/prefaulted_heap.h)
      Serve(q);
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
