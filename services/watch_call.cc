// WatchPresence: one server-streaming call per watcher, on the completion-queue API like every
// other method (services/async_call.h).
//
// A watcher keeps no buffer of its own: it reads the events after its position from the
// process's presence Feed (shared by all watchers), or from the log for a resume older than the
// feed holds, and writes them one at a time (events that are ready go out together: each write
// but the last carries the buffer hint). Once caught up it waits on the feed, which wakes it
// through an alarm on its queue. A watcher that has caught up once and then falls more than
// --presence_max_lag events behind the newest, and stays there for a second or had a write
// stalled that long (FellBehind), is ended with RESOURCE_EXHAUSTED and the cursor to resume
// after; memory stays bounded by the feed, whatever the watchers do, and the edge never waits for
// them.

#include <grpcpp/alarm.h>

#include <deque>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/base/ids.h"
#include "common/base/metrics.h"
#include "services/push_service.h"
#include "spdlog/spdlog.h"

namespace push::service {
namespace {

constexpr size_t kMaxWatchedUsers = 10000;
constexpr size_t kBatch = 256;
// How long a watcher may stay more than --presence_max_lag behind, or have one write stalled.
constexpr absl::Duration kStall = absl::Seconds(1);
// How long a woken watcher waits for more events before it writes (Wake).
constexpr absl::Duration kCoalesce = absl::Milliseconds(2);

void ToProto(const presence::Event& e, v1::PresenceEvent* out) {
  out->set_cursor(e.cursor);
  out->set_kind(static_cast<v1::PresenceEvent::Kind>(e.kind));
  out->set_user_id(e.user_id);
  out->set_connection_id(e.connection_id);
  out->set_device_id(e.device_id);
  out->set_node_id(e.node_id);
  out->set_reason(e.reason);
  int64_t nanos = absl::ToUnixNanos(e.at);
  out->mutable_at()->set_seconds(nanos / 1000000000);
  out->mutable_at()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

}  // namespace

// Events: arrived_ (a call came, or not ok: shutting down), written_, finished_, done_ (gRPC is
// done with the call: finished or cancelled), wake_ (the alarm the feed's Wake sets). A log read
// answers on a Redis thread. The call frees itself once finished, done, and no alarm, write or
// log read is outstanding.
class PushServiceImpl::WatchCall final : public presence::Feed::Waiter {
 public:
  WatchCall(PushServiceImpl* service, grpc::ServerCompletionQueue* queue)
      : service_(service), live_(&service->queues_), queue_(queue), writer_(&context_) {
    context_.AsyncNotifyWhenDone(&done_);
    service_->service_.RequestWatchPresence(&context_, &raw_request_, &writer_, queue_, queue_,
                                            &arrived_);
  }

  // The feed has events past our position. Under the feed's lock, which Step holds mu_ around:
  // it must not take mu_, only arm the alarm (once per registration), whose event runs Step.
  // The alarm fires kCoalesce later, so that events coming close together are taken and written
  // together (one socket write) rather than one wake-up and one write each.
  void Wake() override {
    alarm_armed_.store(true);
    alarm_.Set(
        queue_,
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_micros(absl::ToInt64Microseconds(kCoalesce), GPR_TIMESPAN)),
        &wake_);
  }

 private:
  void OnArrived(bool ok) {
    if (!ok) {  // shutting down: no call came (done_ does not fire for a call never started)
      delete this;
      return;
    }
    service_->StartWatchCall(queue_);
    absl::Status status = service_->Authorize(&context_);
    if (status.ok()) status = Parse();
    absl::MutexLock lock(&mu_);
    started_ = true;
    if (!status.ok()) return Finish(ToGrpcStatus(status));
    GlobalMetrics().presence_watchers.fetch_add(1, std::memory_order_relaxed);
    counted_ = true;
    pos_ = request_.after() == 0 ? service_->feed_->last() : request_.after();
    sent_ = pos_;
    // The watch is live from here: the client may wait for the initial metadata to know it, and
    // learns the cursor it starts after (to resume from when no event came yet).
    context_.AddInitialMetadata("presence-cursor", std::to_string(pos_));
    writing_ = true;
    write_started_ = absl::Now();
    writer_.SendInitialMetadata(&written_);
  }

  absl::Status Parse() {
    if (service_->feed_ == nullptr) {
      return absl::UnimplementedError("presence is not served by this process");
    }
    if (absl::Status s = ParseRequest(&raw_request_, &request_); !s.ok()) return s;
    if (static_cast<size_t>(request_.user_ids_size()) > kMaxWatchedUsers) {
      return absl::InvalidArgumentError(absl::StrCat("user_ids has ", request_.user_ids_size(),
                                                     " entries; at most ", kMaxWatchedUsers,
                                                     " are allowed (empty = every user)"));
    }
    for (int i = 0; i < request_.user_ids_size(); ++i) {
      if (absl::Status s = ValidateUserId(request_.user_ids(i)); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("user_ids[", i, "]: ", s.message()));
      }
      users_.insert(request_.user_ids(i));
    }
    return absl::OkStatus();
  }

  // What comes next: write, read, wait or finish. Runs on the queue's thread or a log read's.
  void Step() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (!finishing_ && !writing_ && !reading_log_ && !waiting_) {
      if (cancelled_) return Finish(grpc::Status::CANCELLED);
      if (service_->ending_watches_.load()) {
        return Finish(grpc::Status(
            grpc::StatusCode::UNAVAILABLE,
            absl::StrCat("server is shutting down; resume on another instance with after=",
                         sent_)));
      }
      if (!pending_.empty()) return Write();
      std::vector<presence::Event> batch;
      switch (service_->feed_->Take(pos_, kBatch, &batch)) {
        case presence::Feed::Read::kOk:
          if (batch.empty()) {
            caught_up_ = true;
            WaitOnFeed();
            continue;
          }
          if (CheckLag()) return;
          Queue(std::move(batch));
          break;
        case presence::Feed::Read::kBefore:
        case presence::Feed::Read::kAhead:
          ReadLog();
          return;
      }
    }
  }

  // Ends the watcher (true) when it fell too far behind: the events past the last one written
  // to it count, whether taken from the feed already or not.
  bool CheckLag() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!caught_up_ || !FellBehind(service_->feed_->last() - sent_)) return false;
    GlobalMetrics().presence_watcher_drops.fetch_add(1, std::memory_order_relaxed);
    Finish(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("this watcher fell more than ", service_->max_lag_,
                     " events behind (--presence_max_lag); resume with after=", sent_)));
    return true;
  }

  // Whether a watcher `lag` events behind the newest is too slow to keep: more than
  // --presence_max_lag behind, and either its last write was stalled (the client did not read)
  // for kStall, or it has stayed that far behind for kStall (a burst of events from the log is
  // not a slow watcher: one that reads catches up within it).
  bool FellBehind(uint64_t lag) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const bool stalled = stalled_;
    stalled_ = false;
    if (lag <= service_->max_lag_) {
      behind_since_ = absl::InfiniteFuture();
      return false;
    }
    absl::Time now = absl::Now();
    if (behind_since_ == absl::InfiniteFuture()) behind_since_ = now;
    return stalled || now - behind_since_ >= kStall;
  }

  // Registers with the feed for the events after pos_ (waiting_ until the alarm's event), or
  // returns not waiting when they are there already. Without mu_ held around the feed's lock.
  void WaitOnFeed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    waiting_ = true;
    registering_ = true;
    const uint64_t after = pos_;
    mu_.Unlock();
    bool registered = service_->feed_->Wait(this, after);
    mu_.Lock();
    registering_ = false;
    if (!registered) {
      waiting_ = false;  // events came meanwhile
    } else if (done_fired_) {
      CancelWait();  // the call ended while we registered
    }
  }

  // Unregisters from the feed; a Wake already under way still arms the alarm (OnWake follows).
  void CancelWait() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    mu_.Unlock();
    service_->feed_->Cancel(this);
    mu_.Lock();
    if (!alarm_armed_.load()) waiting_ = false;
  }

  // Keeps the events of the watched users; the position moves past all of them.
  void Queue(std::vector<presence::Event> batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (presence::Event& e : batch) {
      pos_ = e.cursor;
      if (users_.empty() || users_.contains(e.user_id)) pending_.push_back(std::move(e));
    }
  }

  // Events the feed does not hold: older than it (a resume), or newer than it has yet.
  void ReadLog() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    reading_log_ = true;
    const uint64_t after = pos_;
    // The memory log answers inline, taking mu_ in the callback.
    mu_.Unlock();
    service_->presence_log_->ReadLog(
        after, kBatch, [this](absl::StatusOr<presence::PresenceLog::Page> page) {
          bool free;
          {
            absl::MutexLock lock(&mu_);
            reading_log_ = false;
            if (!page.ok()) {
              Finish(
                  grpc::Status(grpc::StatusCode::UNAVAILABLE,
                               absl::StrCat("presence log unavailable (", page.status().message(),
                                            "); resume with after=", sent_)));
            } else if (page->resync) {
              presence::Event resync;
              resync.kind = presence::Kind::kResync;
              resync.cursor = page->resync_from;
              resync.at = absl::Now();
              resync.reason = "resume point no longer kept; read ListClients again";
              pos_ = page->resync_from;
              pending_.push_back(std::move(resync));
              Step();
            } else if (page->events.empty()) {
              // Nothing newer in the log than our position: wait for the feed to pass it.
              WaitOnFeed();
              Step();
            } else {
              Queue(std::move(page->events));
              Step();
            }
            free = Release();
          }
          if (free) delete this;
        });
    mu_.Lock();
  }

  void Write() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::PresenceEvent event;
    ToProto(pending_.front(), &event);
    sent_ = pending_.front().cursor;
    pending_.pop_front();
    grpc::WriteOptions options;
    if (!pending_.empty()) options.set_buffer_hint();  // ready ones go out in one write
    writing_ = true;
    write_started_ = absl::Now();
    writer_.Write(SerializeResponse(event), options, &written_);
  }

  void Finish(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_) return;
    finishing_ = true;
    if (counted_) GlobalMetrics().presence_watchers.fetch_sub(1, std::memory_order_relaxed);
    counted_ = false;
    writer_.Finish(status, &finished_);
  }

  void OnWritten(bool ok) {
    bool free;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;  // the client is gone
      if (absl::Now() - write_started_ >= kStall) stalled_ = true;
      if (!finishing_ && !cancelled_) CheckLag();
      Step();
      free = Release();
    }
    if (free) delete this;
  }

  void OnWake(bool) {
    bool free;
    {
      absl::MutexLock lock(&mu_);
      alarm_armed_.store(false);
      waiting_ = false;  // the feed forgot us when it woke us
      Step();
      free = Release();
    }
    if (free) delete this;
  }

  void OnDone(bool) {
    bool free;
    {
      absl::MutexLock lock(&mu_);
      done_fired_ = true;
      if (context_.IsCancelled()) cancelled_ = true;
      // (While registering, WaitOnFeed sees done_fired_ and cancels.)
      if (waiting_ && !registering_ && started_) CancelWait();
      if (started_) Step();
      free = Release();
    }
    if (free) delete this;
  }

  void OnFinished(bool) {
    bool free;
    {
      absl::MutexLock lock(&mu_);
      finished_done_ = true;
      free = Release();
    }
    if (free) delete this;
  }

  // Whether the call is over for good; then the caller frees it, once.
  bool Release() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (dead_ || !finished_done_ || !done_fired_ || writing_ || reading_log_ || waiting_ ||
        registering_ || alarm_armed_.load()) {
      return false;
    }
    dead_ = true;
    return true;
  }

  PushServiceImpl* const service_;
  LiveCall live_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  grpc::ServerAsyncWriter<grpc::ByteBuffer> writer_;
  grpc::ByteBuffer raw_request_;
  v1::WatchPresenceRequest request_;
  absl::flat_hash_set<std::string> users_;  // empty: every user
  grpc::Alarm alarm_;
  MemberTag<WatchCall, &WatchCall::OnArrived> arrived_{this};
  MemberTag<WatchCall, &WatchCall::OnWritten> written_{this};
  MemberTag<WatchCall, &WatchCall::OnFinished> finished_{this};
  MemberTag<WatchCall, &WatchCall::OnDone> done_{this};
  MemberTag<WatchCall, &WatchCall::OnWake> wake_{this};
  absl::Mutex mu_;
  std::deque<presence::Event> pending_ ABSL_GUARDED_BY(mu_);  // taken, not written yet
  uint64_t pos_ ABSL_GUARDED_BY(mu_) = 0;   // the last cursor taken (written or filtered out)
  uint64_t sent_ ABSL_GUARDED_BY(mu_) = 0;  // the last cursor written: where to resume
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool counted_ ABSL_GUARDED_BY(mu_) = false;
  bool caught_up_ ABSL_GUARDED_BY(mu_) = false;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;  // registered with the feed
  bool registering_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time write_started_ ABSL_GUARDED_BY(mu_);
  bool stalled_ ABSL_GUARDED_BY(mu_) = false;  // the last write took kStall or more
  absl::Time behind_since_ ABSL_GUARDED_BY(mu_) =
      absl::InfiniteFuture();             // in WaitOnFeed, mu_ released
  std::atomic<bool> alarm_armed_{false};  // Wake set the alarm; OnWake not run yet
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_log_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_done_ ABSL_GUARDED_BY(mu_) = false;
  bool done_fired_ ABSL_GUARDED_BY(mu_) = false;
  bool dead_ ABSL_GUARDED_BY(mu_) = false;
};

void PushServiceImpl::StartWatchCall(grpc::ServerCompletionQueue* queue) {
  new WatchCall(this, queue);
}

}  // namespace push::service
