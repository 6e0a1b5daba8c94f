#include "services/health_service.h"

#include <algorithm>

namespace push::service {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch call. Its events: arrived_ (a call came, or not ok: shutting down), written_ (a
// status went out, or not ok: the call is over) and done_ (the call ended: the client left or
// the server shut down; set up before the request, reported only for a call that came). It frees
// itself once the call ended and no write is in flight.
class HealthService::WatchCall {
 public:
  WatchCall(HealthService* health, grpc::ServerCompletionQueue* queue)
      : health_(health), live_(health->threads_), queue_(queue), writer_(&context_) {
    context_.AsyncNotifyWhenDone(&done_);
    health_->service_.RequestWatch(&context_, &request_, &writer_, queue_, queue_, &arrived_);
  }

  // The status may have changed: sends it unless it is what the client has (any thread).
  void Notify() {
    absl::MutexLock lock(&mu_);
    SendIfChanged();
  }

 private:
  void OnArrived(bool ok) {
    if (!ok) {
      delete this;
      return;
    }
    new WatchCall(health_, queue_);
    health_->AddWatcher(this);
    Notify();
  }

  void OnWritten(bool ok) {
    bool free;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok && !ended_) SendIfChanged();
      free = ended_ && !writing_;
    }
    if (free) delete this;
  }

  void OnDone(bool) {
    health_->RemoveWatcher(this);  // no Notify comes after this
    bool free;
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
      free = !writing_;
    }
    if (free) delete this;
  }

  void SendIfChanged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || ended_) return;
    Status now = health_->StatusOf(request_.service());
    if (sent_ && now == last_) return;
    sent_ = true;
    last_ = now;
    response_.set_status(now);
    writing_ = true;
    writer_.Write(response_, &written_);
  }

  HealthService* const health_;
  LiveCall live_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  HealthCheckRequest request_;
  grpc::ServerAsyncWriter<HealthCheckResponse> writer_;
  MemberTag<WatchCall, &WatchCall::OnArrived> arrived_{this};
  MemberTag<WatchCall, &WatchCall::OnWritten> written_{this};
  MemberTag<WatchCall, &WatchCall::OnDone> done_{this};
  absl::Mutex mu_;
  HealthCheckResponse response_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool sent_ ABSL_GUARDED_BY(mu_) = false;
  Status last_ ABSL_GUARDED_BY(mu_) = HealthCheckResponse::UNKNOWN;
};

HealthService::HealthService(std::vector<std::string> service_names)
    : names_(std::move(service_names)) {
  check_.request = [this](grpc::ServerContext* context, grpc::ByteBuffer* request,
                          grpc::ServerAsyncResponseWriter<grpc::ByteBuffer>* writer,
                          grpc::ServerCompletionQueue* queue, void* tag) {
    service_.RequestCheck(context, request, writer, queue, queue, tag);
  };
  check_.handle = [this](grpc::ServerContext*, const HealthCheckRequest& request,
                         HealthCheckResponse* response,
                         absl::AnyInvocable<void(absl::Status)> done) {
    Status status = StatusOf(request.service());
    if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
      return done(absl::NotFoundError(absl::StrCat("unknown service '", request.service(), "'")));
    }
    response->set_status(status);
    done(absl::OkStatus());
  };
}

HealthService::~HealthService() = default;

void HealthService::Listen(QueueThreads* queues) {
  threads_ = queues;
  check_.threads = queues;
  for (const auto& queue : queues->queues()) {
    for (int i = 0; i < 2; ++i)
      UnaryCall<HealthCheckRequest, HealthCheckResponse>::Listen(&check_, queue.get());
    new WatchCall(this, queue.get());
  }
}

HealthService::Status HealthService::StatusOf(const std::string& service) const {
  if (!service.empty() && std::find(names_.begin(), names_.end(), service) == names_.end()) {
    return HealthCheckResponse::SERVICE_UNKNOWN;
  }
  return serving_.load() ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

void HealthService::SetServing(bool serving) {
  if (serving_.exchange(serving) == serving) return;
  absl::MutexLock lock(&mu_);
  for (WatchCall* call : watchers_) call->Notify();
}

void HealthService::AddWatcher(WatchCall* call) {
  absl::MutexLock lock(&mu_);
  watchers_.insert(call);
}

void HealthService::RemoveWatcher(WatchCall* call) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(call);
}

}  // namespace push::service
