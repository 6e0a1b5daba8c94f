#pragma once

#include <grpcpp/alarm.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"

namespace push::service {

// The reactor of a unary call whose handler may answer later, on any thread (a store that waits
// on the network). It
// - counts itself in flight from the handler's start until gRPC is done with it (the drain
//   waits for that);
// - gives a call that carries no deadline a default one: unless answered by then, it ends with
//   DEADLINE_EXCEEDED. The timer is armed only when the handler returns without having answered,
//   so a call answered inline costs no timer.
// The handler fills response(), which the reactor owns, not gRPC's response: an answer that comes
// after the default deadline fired must not write into a call gRPC has already freed. On success
// the answer is swapped into gRPC's response (no copy).
//
// Use: `auto* call = new UnaryCall<R>(...); start work that ends in call->Done(status);
// call->Started(); return call;` — Done may come before or after Started, exactly once.
template <class Response>
class UnaryCall final : public grpc::ServerUnaryReactor {
 public:
  UnaryCall(grpc::CallbackServerContext* context, Response* call_response,
            std::atomic<int64_t>* inflight, absl::Duration default_deadline)
      : context_(context),
        call_response_(call_response),
        inflight_(inflight),
        default_deadline_(default_deadline) {
    inflight_->fetch_add(1, std::memory_order_relaxed);
  }

  Response* response() { return &response_; }

  // The handler's answer.
  void Done(const absl::Status& status) {
    bool late;
    {
      absl::MutexLock lock(&mu_);
      late = answered_;
      answered_ = true;
      if (!late && alarm_) alarm_->Cancel();  // its callback (ok=false) drops the alarm's reference
    }
    if (late) {
      Unref();  // the default deadline came first; the late answer is dropped
      return;
    }
    if (status.ok()) call_response_->Swap(&response_);
    Finish(status.ok() ? grpc::Status::OK
                       : grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                                      std::string(status.message())));
    Unref();
  }

  // The handler has handed the work off (or finished it); arms the default deadline if the call
  // is still unanswered and the client set no deadline. The handler must not touch the reactor
  // afterwards.
  void Started() {
    {
      absl::MutexLock lock(&mu_);
      if (!answered_ && context_->deadline() == std::chrono::system_clock::time_point::max()) {
        refs_.fetch_add(1, std::memory_order_relaxed);
        alarm_.emplace();
        // The callback runs on a gRPC thread, never inside Set, so holding mu_ here is safe.
        alarm_->Set(absl::ToChronoTime(absl::Now() + default_deadline_),
                    [this](bool fired) { OnAlarm(fired); });
      }
    }
    Unref();
  }

  void OnDone() override {
    inflight_->fetch_sub(1, std::memory_order_relaxed);
    Unref();
  }

 private:
  void OnAlarm(bool fired) {
    bool expire = false;
    if (fired) {
      absl::MutexLock lock(&mu_);
      expire = !answered_;
      answered_ = true;
    }
    if (expire) {
      GlobalMetrics().grpc_default_deadline_exceeded.fetch_add(1, std::memory_order_relaxed);
      Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat("no answer within ", absl::FormatDuration(default_deadline_),
                                       " (--grpc_default_deadline applies to calls without a "
                                       "deadline); the request may still take effect")));
    }
    Unref();
  }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  grpc::CallbackServerContext* const context_;
  Response* const call_response_;
  std::atomic<int64_t>* const inflight_;
  const absl::Duration default_deadline_;
  Response response_;
  // References: gRPC (until OnDone), the handler's Done, the handler's Started, and the alarm
  // while armed.
  std::atomic<int> refs_{3};
  absl::Mutex mu_;
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Alarm> alarm_ ABSL_GUARDED_BY(mu_);
};

}  // namespace push::service
