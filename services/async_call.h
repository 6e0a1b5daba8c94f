#pragma once

// gRPC's completion-queue API, the way pushd uses it: every method of every service is served by
// a few threads, each draining its own completion queue (QueueThreads). The thread that takes a
// call's event runs the handler at once: no executor, no hand-off. On the callback API a call
// costs the server more CPU here (27 against 19 us for an empty call, BENCHMARKS.md), every event
// crosses from gRPC's polling threads to its executor, and those extra pollers hand each
// network event to another thread.

#include <grpcpp/alarm.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/async_unary_call.h>
#include <grpcpp/support/byte_buffer.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/metrics.h"
#include "common/base/write_batch.h"

namespace push::service {

// What a completion-queue event points to: one operation of one call.
class Tag {
 public:
  virtual void Run(bool ok) = 0;

 protected:
  ~Tag() = default;
};

// A Tag that calls `Method` of `C`.
template <class C, void (C::*Method)(bool)>
class MemberTag final : public Tag {
 public:
  explicit MemberTag(C* call) : call_(call) {}
  void Run(bool ok) override { (call_->*Method)(ok); }

 private:
  C* const call_;
};

// absl::Status -> grpc::Status; the codes map one to one.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Protobuf's own log lines (it reports, for one, each string field that is not UTF-8 when parsing)
// go to spdlog at debug level instead of stderr, where any client could make pushd write them;
// the last one of this thread is kept for ParseRequest's answer. Idempotent.
void RouteProtobufLogs();
void ClearProtobufError();
std::string TakeProtobufError();

// pushd's methods are registered raw (bytes in, bytes out) and parse their requests here, so that
// a request that is not a valid message gets INVALID_ARGUMENT and words: gRPC's own parse answers a
// unary call INTERNAL "Unable to parse request" and ends a stream as if the client had closed its
// side, which a sender cannot tell from success.
template <class Message>
absl::Status ParseRequest(grpc::ByteBuffer* bytes, Message* out) {
  ClearProtobufError();
  if (grpc::SerializationTraits<Message>::Deserialize(bytes, out).ok()) return absl::OkStatus();
  std::string why = TakeProtobufError();
  return absl::InvalidArgumentError(absl::StrCat("the request is not a valid ",
                                                 Message::descriptor()->full_name(), ": ",
                                                 why.empty() ? "malformed protobuf" : why));
}

// A response as the bytes a raw method sends.
template <class Message>
grpc::ByteBuffer SerializeResponse(const Message& message) {
  grpc::ByteBuffer bytes;
  bool own = false;
  grpc::SerializationTraits<Message>::Serialize(message, &bytes, &own);
  return bytes;
}

// The completion queues and their threads, one thread per queue.
class QueueThreads {
 public:
  ~QueueThreads() { Stop(); }
  // Before the builder's BuildAndStart.
  void Add(grpc::ServerBuilder* builder, int count);
  const std::vector<std::unique_ptr<grpc::ServerCompletionQueue>>& queues() const {
    return queues_;
  }
  // After BuildAndStart (and after the first calls were requested).
  void Start();
  // After the server's Shutdown: waits (at most `wait`) until every call object is gone, then
  // shuts the queues down, drains them and joins the threads (idempotent). A call cancelled by the
  // server's Shutdown still gets its last events and may start an operation (a stream's Finish
  // after its failed read): on a queue already shut down that would abort the process.
  void Stop(absl::Duration wait = absl::Seconds(2));

  // Call objects alive on these queues (LiveCall).
  std::atomic<int64_t>& live() { return live_; }

 private:
  // One thread's loop: runs the queue's events until it shuts down.
  static void Serve(grpc::ServerCompletionQueue* queue);

  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> threads_;
  std::atomic<int64_t> live_{0};
};

// A member of every call object: counts it alive in its QueueThreads from construction (the
// request for a call) to destruction.
class LiveCall {
 public:
  explicit LiveCall(QueueThreads* threads) : live_(&threads->live()) {
    live_->fetch_add(1, std::memory_order_relaxed);
  }
  ~LiveCall() { live_->fetch_sub(1, std::memory_order_release); }
  LiveCall(const LiveCall&) = delete;
  LiveCall& operator=(const LiveCall&) = delete;

 private:
  std::atomic<int64_t>* const live_;
};

// How one unary method is served. The method is registered raw (the service's
// WithRawMethod_X): requests arrive as bytes and are parsed by the call (ParseRequest).
template <class Request, class Response>
struct UnaryMethod {
  using Writer = grpc::ServerAsyncResponseWriter<grpc::ByteBuffer>;
  // Asks gRPC for the next call of the method on `queue`, its arrival reported with `tag`.
  std::function<void(grpc::ServerContext*, grpc::ByteBuffer*, Writer*,
                     grpc::ServerCompletionQueue* queue, void* tag)>
      request;
  // Serves one call: fills the response and ends in done(status) exactly once, inline or later
  // on any thread.
  std::function<void(grpc::ServerContext*, const Request&, Response*,
                     absl::AnyInvocable<void(absl::Status)>)>
      handle;
  // Counts calls from arrival until gRPC is done with them (the drain waits for zero); may be null.
  std::atomic<int64_t>* inflight = nullptr;
  // A call that carries no deadline of its own and is not answered within this ends with
  // DEADLINE_EXCEEDED; zero: never.
  absl::Duration default_deadline = absl::ZeroDuration();
  // The queues the method is served on (required).
  QueueThreads* threads = nullptr;
};

// One call of a unary method, from the request for it to gRPC's last event about it. Its events:
//  - arrived_: a call came (or, not ok, the server is shutting down): the next one is requested,
//    then the request is parsed and the handler runs on this thread, usually answering inline
//    (a request that does not parse is answered INVALID_ARGUMENT without it);
//  - finished_: gRPC is done with the answer;
//  - alarm_tag_: the default deadline fired, or was cancelled by the answer.
// It owns the response the handler fills (a late answer, after the default deadline, writes into
// it harmlessly) and frees itself once gRPC, the handler and the alarm are all done with it.
template <class Request, class Response>
class UnaryCall {
 public:
  // Requests the next call of `method` on `queue`.
  static void Listen(const UnaryMethod<Request, Response>* method,
                     grpc::ServerCompletionQueue* queue) {
    new UnaryCall(method, queue);
  }

 private:
  UnaryCall(const UnaryMethod<Request, Response>* method, grpc::ServerCompletionQueue* queue)
      : method_(method), live_(method->threads), queue_(queue), writer_(&context_) {
    method_->request(&context_, &raw_request_, &writer_, queue_, &arrived_);
  }

  void OnArrived(bool ok) {
    if (!ok) {  // the server is shutting down: no call came
      delete this;
      return;
    }
    Listen(method_, queue_);
    if (method_->inflight != nullptr) method_->inflight->fetch_add(1, std::memory_order_relaxed);
    if (absl::Status parsed = ParseRequest(&raw_request_, &request_); !parsed.ok()) {
      Done(parsed);
    } else {
      method_->handle(&context_, request_, &response_, [this](absl::Status s) { Done(s); });
    }
    Started();
  }

  // The handler's answer; exactly once, on any thread.
  void Done(const absl::Status& status) {
    bool late;
    {
      absl::MutexLock lock(&mu_);
      late = answered_;
      answered_ = true;
      if (!late && alarm_) alarm_->Cancel();  // its event (not ok) drops the alarm's reference
    }
    if (late) {
      Unref();
    } else if (WriteBatch* batch = WriteBatch::Current()) {
      // After the frames of this burst, with its other answers (WriteBatch).
      batch->DeferAnswer([this, status] {
        Answer(status);
        Unref();
      });
    } else {
      Answer(status);
      Unref();
    }
  }

  void Answer(const absl::Status& status) {
    if (status.ok()) {
      writer_.Finish(SerializeResponse(response_), grpc::Status::OK, &finished_);
    } else {
      writer_.FinishWithError(ToGrpcStatus(status), &finished_);
    }
  }

  // The handler has returned: arms the default deadline if the call is still unanswered and
  // carries no deadline of its own.
  void Started() {
    {
      absl::MutexLock lock(&mu_);
      if (!answered_ && method_->default_deadline > absl::ZeroDuration() &&
          context_.deadline() == std::chrono::system_clock::time_point::max()) {
        refs_.fetch_add(1, std::memory_order_relaxed);
        alarm_.emplace();
        alarm_->Set(queue_, absl::ToChronoTime(absl::Now() + method_->default_deadline),
                    &alarm_tag_);
      }
    }
    Unref();
  }

  void OnAlarm(bool fired) {
    bool expire = false;
    if (fired) {
      absl::MutexLock lock(&mu_);
      expire = !answered_;
      answered_ = true;
    }
    if (expire) {
      GlobalMetrics().grpc_default_deadline_exceeded.fetch_add(1, std::memory_order_relaxed);
      writer_.FinishWithError(
          grpc::Status(
              grpc::StatusCode::DEADLINE_EXCEEDED,
              absl::StrCat("no answer within ", absl::FormatDuration(method_->default_deadline),
                           " (--grpc_default_deadline applies to calls without a "
                           "deadline); the request may still take effect")),
          &finished_);
    }
    Unref();
  }

  void OnFinished(bool) {
    if (method_->inflight != nullptr) method_->inflight->fetch_sub(1, std::memory_order_relaxed);
    Unref();
  }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  const UnaryMethod<Request, Response>* const method_;
  LiveCall live_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  grpc::ByteBuffer raw_request_;
  Request request_;
  Response response_;
  typename UnaryMethod<Request, Response>::Writer writer_;
  MemberTag<UnaryCall, &UnaryCall::OnArrived> arrived_{this};
  MemberTag<UnaryCall, &UnaryCall::OnFinished> finished_{this};
  MemberTag<UnaryCall, &UnaryCall::OnAlarm> alarm_tag_{this};
  // References once a call came: gRPC's finish event, the handler's Done, the handler's return
  // (Started), and the alarm while armed.
  std::atomic<int> refs_{3};
  absl::Mutex mu_;
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Alarm> alarm_ ABSL_GUARDED_BY(mu_);
};

}  // namespace push::service
