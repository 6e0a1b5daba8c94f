#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/auth/api_key.h"
#include "common/delivery/directory.h"
#include "common/delivery/hub.h"
#include "common/delivery/presence.h"
#include "common/delivery/store.h"
#include "push/v1/push.grpc.pb.h"
#include "services/async_call.h"
#include "services/health_service.h"

namespace push::service {

struct PushOptions {
  uint64_t max_message_bytes = 65536;
  absl::Duration history_ttl = absl::Hours(24);
  std::string node_id;
};

// The PushService's logic as a plain class: validate, append to the store, publish to the hub.
// It knows nothing of gRPC servers, so tests call it directly.
class PushLogic {
 public:
  // `directory` answers ListClients and DeleteClient (this process, or every node via Redis).
  PushLogic(PushOptions options, store::Store* store, Directory* directory);

  // `done` runs exactly once, possibly on another thread.
  void Push(const v1::PushRequest& request, v1::PushResponse* response,
            absl::AnyInvocable<void(absl::Status)> done);
  void Broadcast(const v1::BroadcastRequest& request, v1::BroadcastResponse* response,
                 absl::AnyInvocable<void(absl::Status)> done);
  void DeleteClient(const v1::DeleteClientRequest& request, v1::DeleteClientResponse* response,
                    absl::AnyInvocable<void(absl::Status)> done);
  void ListClients(const v1::ListClientsRequest& request, v1::ListClientsResponse* response,
                   absl::AnyInvocable<void(absl::Status)> done);
  void GetReceipts(const v1::GetReceiptsRequest& request, v1::GetReceiptsResponse* response,
                   absl::AnyInvocable<void(absl::Status)> done);

  // While draining, Push answers UNAVAILABLE.
  void SetDraining() { draining_.store(true); }

 private:
  // Draining, size, JSON and message id checks shared by Push and Broadcast.
  absl::Status CheckPayload(const std::string& data, const std::string& message_id);
  absl::Duration Ttl(uint32_t ttl_seconds) const;
  static void FillPage(const ClientPage& page, v1::ListClientsResponse* response);
  // Appends one validated message to `user_id`'s stream and publishes it.
  void Append(const std::string& user_id, std::shared_ptr<const std::string> payload,
              const std::string& message_id, absl::Duration ttl, v1::PushResponse* response,
              absl::AnyInvocable<void(absl::Status)> done);

  const PushOptions options_;
  store::Store* const store_;
  Directory* const directory_;
  std::atomic<bool> draining_{false};
};

// The gRPC face of PushLogic, with grpc.health.v1.Health beside it, all on the completion-queue
// API (services/async_call.h): `threads` queues, each drained by one thread that runs the whole
// call (validate, append, hand to the sessions, answer). Handlers never block.
class PushServiceImpl final {
 public:
  // `api_key` may be null (no key configured). Unary calls that bring no deadline end with
  // DEADLINE_EXCEEDED when not answered within `default_deadline`.
  PushServiceImpl(PushLogic* logic, const ApiKey* api_key,
                  absl::Duration default_deadline = absl::Seconds(10));
  ~PushServiceImpl();

  // Registers both services and `threads` completion queues: before the builder's BuildAndStart.
  void Register(grpc::ServerBuilder* builder, int threads);
  // After BuildAndStart: requests the first calls and starts the threads.
  void Start();
  // After the server's Shutdown: drains the queues and joins the threads (idempotent).
  void Stop();

  // grpc.health.v1: SERVING or NOT_SERVING, for "" and push.v1.PushService.
  void SetServing(bool serving) { health_.SetServing(serving); }

  // WatchPresence reads `feed`, and `log` for events older than the feed holds; a stream more
  // than `max_lag` events behind is ended. Before Start; without it WatchPresence answers
  // UNIMPLEMENTED.
  void SetPresence(presence::Feed* feed, presence::PresenceLog* log, uint32_t max_lag) {
    feed_ = feed;
    presence_log_ = log;
    max_lag_ = max_lag;
  }
  // The drain: every WatchPresence stream ends with UNAVAILABLE and where to resume.
  void EndWatches();

  // Calls not finished yet (the drain waits for zero before shutting gRPC down). A PushStream
  // counts each request until it is answered, so an idle open stream does not hold a drain.
  int64_t inflight() const { return inflight_.load(); }

 private:
  class StreamCall;
  class WatchCall;
  // Requests the next WatchPresence call on `queue` (services/watch_call.cc).
  void StartWatchCall(grpc::ServerCompletionQueue* queue);
  // OK, or UNAUTHENTICATED when a key is configured and the call does not carry it.
  absl::Status Authorize(grpc::ServerContext* context) const;
  // Serves a unary method through PushLogic's `serve`, after Authorize.
  // `request` is the generated service's RequestX member.
  template <class Request, class Response, class RequestMethod>
  void Serve(UnaryMethod<Request, Response>* method, RequestMethod request,
             void (PushLogic::*serve)(const Request&, Response*,
                                      absl::AnyInvocable<void(absl::Status)>));

  PushLogic* const logic_;
  const ApiKey* const api_key_;
  const absl::Duration default_deadline_;
  std::atomic<int64_t> inflight_{0};
  // Every method raw: requests are parsed by pushd (ParseRequest in async_call.h).
  using RawService =
      v1::PushService::WithRawMethod_Push<v1::PushService::WithRawMethod_DeleteClient<
          v1::PushService::WithRawMethod_ListClients<v1::PushService::WithRawMethod_PushStream<
              v1::PushService::WithRawMethod_Broadcast<v1::PushService::WithRawMethod_WatchPresence<
                  v1::PushService::WithRawMethod_GetReceipts<v1::PushService::Service>>>>>>>;
  RawService service_;
  HealthService health_;
  QueueThreads queues_;
  UnaryMethod<v1::PushRequest, v1::PushResponse> push_;
  UnaryMethod<v1::BroadcastRequest, v1::BroadcastResponse> broadcast_;
  UnaryMethod<v1::DeleteClientRequest, v1::DeleteClientResponse> delete_client_;
  UnaryMethod<v1::ListClientsRequest, v1::ListClientsResponse> list_clients_;
  UnaryMethod<v1::GetReceiptsRequest, v1::GetReceiptsResponse> get_receipts_;
  presence::Feed* feed_ = nullptr;
  presence::PresenceLog* presence_log_ = nullptr;
  uint32_t max_lag_ = 10000;
  std::atomic<bool> ending_watches_{false};
};

}  // namespace push::service
