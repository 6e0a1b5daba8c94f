#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/api_key.h"
#include "common/directory.h"
#include "common/hub.h"
#include "common/store.h"
#include "push/v1/push.grpc.pb.h"

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
  PushLogic(PushOptions options, store::Store* store, Hub* hub, Directory* directory);

  // `done` runs exactly once, possibly on another thread.
  void Push(const v1::PushRequest& request, v1::PushResponse* response,
            absl::AnyInvocable<void(absl::Status)> done);
  void Broadcast(const v1::BroadcastRequest& request, v1::BroadcastResponse* response,
                 absl::AnyInvocable<void(absl::Status)> done);
  void DeleteClient(const v1::DeleteClientRequest& request, v1::DeleteClientResponse* response,
                    absl::AnyInvocable<void(absl::Status)> done);
  void ListClients(const v1::ListClientsRequest& request, v1::ListClientsResponse* response,
                   absl::AnyInvocable<void(absl::Status)> done);

  // While draining, Push answers UNAVAILABLE.
  void SetDraining() { draining_.store(true); }

 private:
  // Draining, size, JSON and message id checks shared by Push and Broadcast.
  absl::Status CheckPayload(const std::string& data, const std::string& message_id);
  absl::Duration Ttl(uint32_t ttl_seconds) const;
  static absl::Status FillPage(const std::vector<ClientRecord>& all, bool paged,
                               const std::string& after_user, const std::string& after_conn,
                               uint32_t page_size, v1::ListClientsResponse* response);
  // Appends one validated message to `user_id`'s stream and publishes it.
  void Append(const std::string& user_id, std::shared_ptr<const std::string> payload,
              const std::string& message_id, absl::Duration ttl, v1::PushResponse* response,
              absl::AnyInvocable<void(absl::Status)> done);

  const PushOptions options_;
  store::Store* const store_;
  Hub* const hub_;
  Directory* const directory_;
  std::atomic<bool> draining_{false};
};

// absl::Status -> grpc::Status; the codes map one to one.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The gRPC face of PushLogic (callback API; handlers never block).
class PushServiceImpl final : public v1::PushService::CallbackService {
 public:
  // `api_key` may be null (no key configured). Unary calls that bring no deadline end with
  // DEADLINE_EXCEEDED when not answered within `default_deadline`.
  PushServiceImpl(PushLogic* logic, const ApiKey* api_key,
                  absl::Duration default_deadline = absl::Seconds(10))
      : logic_(logic), api_key_(api_key), default_deadline_(default_deadline) {}

  // Calls whose reactor is not done yet (the drain waits for zero before shutting gRPC down).
  int64_t inflight() const { return inflight_.load(); }

  grpc::ServerUnaryReactor* Push(grpc::CallbackServerContext* context,
                                 const v1::PushRequest* request,
                                 v1::PushResponse* response) override;
  grpc::ServerBidiReactor<v1::PushRequest, v1::PushResponse>* PushStream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* Broadcast(grpc::CallbackServerContext* context,
                                      const v1::BroadcastRequest* request,
                                      v1::BroadcastResponse* response) override;
  grpc::ServerUnaryReactor* DeleteClient(grpc::CallbackServerContext* context,
                                         const v1::DeleteClientRequest* request,
                                         v1::DeleteClientResponse* response) override;
  grpc::ServerUnaryReactor* ListClients(grpc::CallbackServerContext* context,
                                        const v1::ListClientsRequest* request,
                                        v1::ListClientsResponse* response) override;

 private:
  class StreamReactor;
  // OK, or UNAUTHENTICATED when a key is configured and the call does not carry it.
  absl::Status Authorize(grpc::CallbackServerContext* context) const;

  PushLogic* const logic_;
  const ApiKey* const api_key_;
  const absl::Duration default_deadline_;
  std::atomic<int64_t> inflight_{0};
};

}  // namespace push::service
