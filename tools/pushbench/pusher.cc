#include "tools/pushbench/pusher.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <cstdio>
#include <deque>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "push/v1/push.grpc.pb.h"

namespace pushbench {
namespace {

namespace v1 = push::v1;

constexpr auto kCallTimeout = std::chrono::seconds(30);

// {"t":<send stamp ns>,"k":<request number>,"pad":"xxx…"} padded to `size` bytes.
std::string MakePayload(int64_t stamp, uint64_t k, int size) {
  char head[80];
  int n = std::snprintf(head, sizeof(head), R"({"t":%lld,"k":%llu,"pad":")",
                        static_cast<long long>(stamp), static_cast<unsigned long long>(k));
  std::string payload;
  payload.reserve(static_cast<size_t>(std::max(size, n + 2)));
  payload.append(head, static_cast<size_t>(n));
  if (size > n + 2) payload.append(static_cast<size_t>(size - n - 2), 'x');
  payload.append("\"}");
  return payload;
}

std::string StatusText(const grpc::Status& s) {
  return "gRPC status " + std::to_string(s.error_code()) + ": " + s.error_message();
}

// What one Run shares with its completion callbacks (which run on gRPC's threads).
struct RunState {
  RunState(UserTable* u, int streams) : users(u), streams_open(streams) {}

  UserTable* users;
  absl::Mutex mu;
  absl::CondVar cv;
  std::atomic<int64_t> inflight{0};  // changed under mu, read without it
  std::atomic<uint64_t> pushes_ok{0}, failed{0}, delivered{0};
  int streams_open ABSL_GUARDED_BY(mu) = 0;
  Histogram rpc_latency ABSL_GUARDED_BY(mu);
  std::string first_error ABSL_GUARDED_BY(mu);
  Clock::time_point last_answer ABSL_GUARDED_BY(mu) = Clock::now();

  void RecordOk(uint32_t user, const v1::PushResponse& r) {
    users->pushed[user].fetch_add(1, std::memory_order_relaxed);
    uint64_t seq = r.seq();
    auto& max_seq = users->max_seq[user];
    uint64_t seen = max_seq.load(std::memory_order_relaxed);
    while (seen < seq && !max_seq.compare_exchange_weak(seen, seq, std::memory_order_relaxed)) {
    }
    delivered.fetch_add(r.delivered(), std::memory_order_relaxed);
    pushes_ok.fetch_add(1, std::memory_order_relaxed);
  }
  void RecordFailure(uint64_t count, const std::string& why) {
    failed.fetch_add(count, std::memory_order_relaxed);
    absl::MutexLock lock(&mu);
    if (first_error.empty()) first_error = why;
  }
  // Notifies under the lock: once the runner sees the count reach zero, no callback touches this.
  void Answered(int64_t sent_ns, int64_t count = 1) {
    int64_t now = NowNanos();
    absl::MutexLock lock(&mu);
    if (sent_ns > 0) rpc_latency.Record(static_cast<uint64_t>(std::max<int64_t>(now - sent_ns, 0)));
    last_answer = Clock::now();
    inflight.fetch_sub(count, std::memory_order_relaxed);
    cv.SignalAll();
  }
};

struct UnaryCall {
  grpc::ClientContext ctx;
  v1::PushRequest request;
  v1::PushResponse response;
  uint32_t user = 0;
  int64_t sent_ns = 0;
};

struct BroadcastCall {
  grpc::ClientContext ctx;
  v1::BroadcastRequest request;
  v1::BroadcastResponse response;
  uint32_t first_user = 0;
  int64_t sent_ns = 0;
};

// One PushStream: requests written one at a time from a queue, answers read in order.
class StreamCall final : public grpc::ClientBidiReactor<v1::PushRequest, v1::PushResponse> {
 public:
  StreamCall(RunState* run, v1::PushService::Stub* stub, std::chrono::seconds lifetime)
      : run_(run) {
    ctx_.set_deadline(std::chrono::system_clock::now() + lifetime);
    stub->async()->PushStream(&ctx_, this);
    StartRead(&response_);
    StartCall();
  }

  int64_t outstanding() const { return outstanding_.load(std::memory_order_relaxed); }

  // From the issuing thread. False if the stream has already ended.
  bool Send(uint32_t user, std::string payload) {
    absl::ReleasableMutexLock lock(&mu_);
    if (done_ || closing_) return false;
    v1::PushRequest request;
    request.set_user_id(run_->users->names[user]);
    request.set_data(std::move(payload));
    pending_.push_back(std::move(request));
    waiting_.push_back({user, NowNanos()});
    outstanding_.fetch_add(1, std::memory_order_relaxed);
    run_->inflight.fetch_add(1, std::memory_order_relaxed);
    if (writing_) return true;
    writing_ = true;
    current_ = std::move(pending_.front());
    pending_.pop_front();
    lock.Release();
    StartWrite(&current_);
    return true;
  }

  // No more requests: half-close once the queue is written.
  void Close() {
    absl::ReleasableMutexLock lock(&mu_);
    closing_ = true;
    if (writing_ || writes_done_ || done_) return;
    writes_done_ = true;
    lock.Release();
    StartWritesDone();
  }

  void OnWriteDone(bool ok) override {
    absl::ReleasableMutexLock lock(&mu_);
    if (ok && !pending_.empty()) {
      current_ = std::move(pending_.front());
      pending_.pop_front();
      lock.Release();
      StartWrite(&current_);
      return;
    }
    writing_ = false;
    if (ok && closing_ && !writes_done_) {
      writes_done_ = true;
      lock.Release();
      StartWritesDone();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream is ending; OnDone follows
    Waiting w{};
    bool matched = false;
    {
      absl::MutexLock lock(&mu_);
      if (!waiting_.empty()) {
        w = waiting_.front();
        waiting_.pop_front();
        outstanding_.fetch_sub(1, std::memory_order_relaxed);
        matched = true;
      }
    }
    if (matched) {
      run_->RecordOk(w.user, response_);
      run_->Answered(w.sent_ns);
    } else {
      run_->RecordFailure(0, "PushStream answered more responses than requests");
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    int64_t unanswered;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      unanswered = static_cast<int64_t>(waiting_.size());
      waiting_.clear();
      pending_.clear();
    }
    if (!status.ok() || unanswered > 0) {
      run_->RecordFailure(static_cast<uint64_t>(unanswered),
                          "PushStream ended with " + StatusText(status) + " and " +
                              std::to_string(unanswered) + " requests unanswered");
    }
    absl::MutexLock lock(&run_->mu);
    run_->inflight.fetch_sub(unanswered, std::memory_order_relaxed);
    --run_->streams_open;
    run_->cv.SignalAll();
  }

 private:
  struct Waiting {
    uint32_t user;
    int64_t sent_ns;
  };
  RunState* const run_;
  grpc::ClientContext ctx_;
  v1::PushResponse response_;
  absl::Mutex mu_;
  std::deque<v1::PushRequest> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<Waiting> waiting_ ABSL_GUARDED_BY(mu_);  // in request order
  v1::PushRequest current_;                           // the one write in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> outstanding_{0};
};

}  // namespace

struct Pusher::Impl {
  UserTable* users;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::PushService::Stub>> stubs;
  uint64_t rng = 0x9e3779b97f4a7c15ull;

  uint64_t Random() {  // xorshift64*
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
  }
};

Pusher::Pusher(const std::string& target, int channels, UserTable* users)
    : impl_(std::make_unique<Impl>()) {
  impl_->users = users;
  impl_->rng ^= static_cast<uint64_t>(NowNanos());
  for (int i = 0; i < std::max(1, channels); ++i) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    // A subchannel pool per channel: each channel gets its own TCP connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    impl_->stubs.push_back(v1::PushService::NewStub(channel));
    impl_->channels.push_back(std::move(channel));
  }
}

Pusher::~Pusher() = default;

bool Pusher::WaitReady(double timeout_s, std::string* error) {
  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  for (auto& channel : impl_->channels) {
    if (!channel->WaitForConnected(deadline)) {
      char buf[80];
      std::snprintf(buf, sizeof(buf), "gRPC channel did not connect within %g s", timeout_s);
      *error = buf;
      return false;
    }
  }
  return true;
}

PushStats Pusher::Run(const PushOptions& options, const std::function<uint64_t()>& received) {
  const int concurrency = std::max(1, options.concurrency);
  RunState run(impl_->users, options.mode == PushMode::kStream ? concurrency : 0);
  const uint32_t n_users = static_cast<uint32_t>(impl_->users->size());
  const int batch = std::clamp<int>(options.broadcast_batch, 1, static_cast<int>(n_users));
  const int window = std::max(1, options.stream_window);
  auto lifetime = std::chrono::seconds(static_cast<int64_t>(options.duration_s) + 120);

  std::vector<std::unique_ptr<StreamCall>> streams;
  if (options.mode == PushMode::kStream) {
    for (int i = 0; i < concurrency; ++i) {
      streams.push_back(std::make_unique<StreamCall>(
          &run, impl_->stubs[i % impl_->stubs.size()].get(), lifetime));
    }
  }
  const int64_t cap = options.mode == PushMode::kStream ? static_cast<int64_t>(concurrency) * window
                                                        : static_cast<int64_t>(concurrency);

  PushStats stats;
  uint64_t issued = 0, recipients = 0, round_robin = 0;
  size_t next_stub = 0, next_stream = 0;
  auto start = Clock::now();
  auto end = start + std::chrono::nanoseconds(static_cast<int64_t>(options.duration_s * 1e9));
  auto pause = [&run] {
    absl::MutexLock lock(&run.mu);
    run.cv.WaitWithTimeout(&run.mu, absl::Microseconds(200));
  };
  auto pick_user = [&]() -> uint32_t {
    return static_cast<uint32_t>(options.round_robin ? round_robin++ % n_users
                                                     : impl_->Random() % n_users);
  };

  while (true) {
    auto now = Clock::now();
    if (now >= end || (options.max_requests && issued >= options.max_requests)) break;
    int64_t stamp;
    if (options.rate > 0) {
      auto due =
          start + std::chrono::nanoseconds(static_cast<int64_t>(issued * 1e9 / options.rate));
      if (due > now) {
        std::this_thread::sleep_until(std::min(due, end));
        continue;
      }
      if (run.inflight.load(std::memory_order_relaxed) >= options.max_inflight) {
        pause();
        continue;
      }
      if (now - due > std::chrono::milliseconds(1)) ++stats.late;
      stats.send_lag_ns.Record(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - due).count()));
      // The intended send time, so a sender that falls behind is charged for it.
      stamp = std::chrono::duration_cast<std::chrono::nanoseconds>(due.time_since_epoch()).count();
    } else {
      bool backlog_full = options.max_backlog > 0 && received &&
                          recipients * static_cast<uint64_t>(options.connections_per_user) >
                              received() + options.max_backlog;
      if (backlog_full || run.inflight.load(std::memory_order_relaxed) >= cap) {
        pause();
        continue;
      }
      stamp = NowNanos();
    }

    switch (options.mode) {
      case PushMode::kUnary: {
        auto* call = new UnaryCall;
        call->user = pick_user();
        call->request.set_user_id(impl_->users->names[call->user]);
        call->request.set_data(MakePayload(stamp, issued, options.payload_bytes));
        call->ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
        call->sent_ns = NowNanos();
        run.inflight.fetch_add(1, std::memory_order_relaxed);
        auto* stub = impl_->stubs[next_stub++ % impl_->stubs.size()].get();
        stub->async()->Push(&call->ctx, &call->request, &call->response,
                            [&run, call](grpc::Status status) {
                              if (status.ok()) {
                                run.RecordOk(call->user, call->response);
                              } else {
                                run.RecordFailure(1, "Push: " + StatusText(status));
                              }
                              int64_t sent = call->sent_ns;
                              delete call;
                              run.Answered(sent);
                            });
        recipients += 1;
        break;
      }
      case PushMode::kBroadcast: {
        auto* call = new BroadcastCall;
        call->first_user = options.round_robin
                               ? static_cast<uint32_t>((round_robin++ * batch) % n_users)
                               : static_cast<uint32_t>(impl_->Random() % n_users);
        for (int i = 0; i < batch; ++i) {
          call->request.add_user_ids(impl_->users->names[(call->first_user + i) % n_users]);
        }
        call->request.set_data(MakePayload(stamp, issued, options.payload_bytes));
        call->ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
        call->sent_ns = NowNanos();
        run.inflight.fetch_add(1, std::memory_order_relaxed);
        auto* stub = impl_->stubs[next_stub++ % impl_->stubs.size()].get();
        stub->async()->Broadcast(
            &call->ctx, &call->request, &call->response,
            [&run, call, batch, n_users](grpc::Status status) {
              if (status.ok() && call->response.results_size() == batch) {
                for (int i = 0; i < batch; ++i) {
                  run.RecordOk((call->first_user + i) % n_users, call->response.results(i));
                }
              } else {
                run.RecordFailure(batch, status.ok() ? "Broadcast: wrong number of results"
                                                     : "Broadcast: " + StatusText(status));
              }
              int64_t sent = call->sent_ns;
              delete call;
              run.Answered(sent);
            });
        recipients += static_cast<uint64_t>(batch);
        break;
      }
      case PushMode::kStream: {
        // The next stream with room in its window (fixed rate: simply the next one).
        StreamCall* target = nullptr;
        for (size_t tries = 0; tries < streams.size() && !target; ++tries) {
          StreamCall* s = streams[next_stream++ % streams.size()].get();
          if (options.rate > 0 || s->outstanding() < window) target = s;
        }
        if (!target) {
          pause();
          continue;
        }
        uint32_t user = pick_user();
        if (!target->Send(user, MakePayload(stamp, issued, options.payload_bytes))) {
          run.RecordFailure(1, "PushStream ended early");
          break;
        }
        recipients += 1;
        break;
      }
    }
    ++issued;
  }

  for (auto& s : streams) s->Close();
  bool unanswered;
  {
    absl::MutexLock lock(&run.mu);
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    bool all, timed_out = false;
    while (true) {
      all = run.inflight.load(std::memory_order_relaxed) == 0 && run.streams_open == 0;
      if (all || timed_out) break;
      timed_out = run.cv.WaitWithDeadline(&run.mu, deadline);
    }
    if (!all) {
      run.failed += static_cast<uint64_t>(std::max<int64_t>(run.inflight.load(), 0));
      if (run.first_error.empty()) run.first_error = "requests still unanswered after 60 s";
    }
    stats.seconds = SecondsBetween(start, run.last_answer);
    stats.rpc_latency_ns = run.rpc_latency;
    stats.first_error = run.first_error;
    // Read under the lock: a stream's OnDone may still be changing streams_open.
    unanswered = run.inflight.load() != 0 || run.streams_open != 0;
  }
  if (unanswered) {
    // Callbacks still reference `run`; leaking is the lesser evil in a tool about to report
    // failure and exit.
    std::fprintf(stderr, "pushbench: giving up on unanswered requests\n");
    std::fflush(stderr);
    std::_Exit(3);
  }
  stats.requests = issued;
  stats.pushes_ok = run.pushes_ok.load();
  stats.failed = run.failed.load();
  stats.delivered = run.delivered.load();
  return stats;
}

}  // namespace pushbench
