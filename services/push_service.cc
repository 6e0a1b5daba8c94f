#include "services/push_service.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/metrics.h"

namespace push::service {
namespace {

constexpr uint32_t kDefaultPageSize = 100;
constexpr uint32_t kMaxPageSize = 1000;
constexpr size_t kMaxReasonBytes = 120;
constexpr size_t kMaxConnectionIdBytes = 64;
constexpr absl::string_view kPageTokenPrefix = "v1\n";

// Page tokens carry the last (user_id, connection_id) of the previous page, so paging stays
// consistent while connections come and go.
std::string EncodePageToken(const ConnectionInfo& last) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(kPageTokenPrefix, last.user_id, "\n", last.connection_id));
}

absl::Status DecodePageToken(absl::string_view token, std::string* user, std::string* conn) {
  std::string raw;
  std::vector<std::string> parts;
  if (absl::WebSafeBase64Unescape(token, &raw) && absl::StartsWith(raw, kPageTokenPrefix)) {
    parts = absl::StrSplit(absl::string_view(raw).substr(kPageTokenPrefix.size()), '\n');
  }
  if (parts.size() != 2 || !ValidateUserId(parts[0]).ok()) {
    return absl::InvalidArgumentError(
        "page_token is not one this server gave out; pass next_page_token from the previous "
        "ListClients response, or leave it empty for the first page");
  }
  *user = std::move(parts[0]);
  *conn = std::move(parts[1]);
  return absl::OkStatus();
}

}  // namespace

PushLogic::PushLogic(PushOptions options, store::Store* store, Hub* hub)
    : options_(std::move(options)), store_(store), hub_(hub) {}

void PushLogic::Push(const v1::PushRequest& request, v1::PushResponse* response,
                     absl::AnyInvocable<void(absl::Status)> done) {
  auto reject = [&done](absl::Status status) {
    GlobalMetrics().pushes_rejected.fetch_add(1, std::memory_order_relaxed);
    done(std::move(status));
  };
  if (draining_.load(std::memory_order_relaxed)) {
    reject(absl::UnavailableError("server is shutting down; retry on another instance"));
    return;
  }
  if (absl::Status s = ValidateUserId(request.user_id()); !s.ok()) return reject(s);
  if (request.data().size() > options_.max_message_bytes) {
    return reject(absl::InvalidArgumentError(
        absl::StrCat("data is ", request.data().size(), " bytes; the limit is ",
                     options_.max_message_bytes, " (--max_message_bytes)")));
  }
  if (absl::Status s = ValidateJson(request.data()); !s.ok()) return reject(s);
  if (absl::Status s = ValidateMessageId(request.message_id()); !s.ok()) return reject(s);

  store::AppendRequest append;
  append.user_id = request.user_id();
  append.data = request.data();
  append.message_id = request.message_id();
  append.ttl =
      request.ttl_seconds() == 0 ? options_.history_ttl : absl::Seconds(request.ttl_seconds());
  std::string user_id = request.user_id();
  store_->Append(std::move(append),
                 [this, response, user_id = std::move(user_id),
                  done = std::move(done)](absl::StatusOr<store::AppendResult> result) mutable {
                   if (!result.ok()) {
                     GlobalMetrics().pushes_rejected.fetch_add(1, std::memory_order_relaxed);
                     done(result.status());
                     return;
                   }
                   const MessagePtr& message = result->message;
                   response->set_message_id(message->id);
                   response->set_seq(message->seq);
                   if (result->duplicate) {
                     GlobalMetrics().pushes_duplicate.fetch_add(1, std::memory_order_relaxed);
                     response->set_delivered(0);
                   } else {
                     GlobalMetrics().pushes_ok.fetch_add(1, std::memory_order_relaxed);
                     response->set_delivered(hub_->Publish(user_id, message));
                   }
                   done(absl::OkStatus());
                 });
}

void PushLogic::DeleteClient(const v1::DeleteClientRequest& request,
                             v1::DeleteClientResponse* response,
                             absl::AnyInvocable<void(absl::Status)> done) {
  if (absl::Status s = ValidateUserId(request.user_id()); !s.ok()) return done(s);
  if (request.connection_id().size() > kMaxConnectionIdBytes) {
    return done(absl::InvalidArgumentError("connection_id is longer than 64 bytes"));
  }
  if (request.reason().size() > kMaxReasonBytes) {
    return done(absl::InvalidArgumentError(
        absl::StrCat("reason is ", request.reason().size(), " bytes; at most 120 are allowed")));
  }
  if (!IsValidUtf8(request.reason())) {
    return done(absl::InvalidArgumentError("reason must be UTF-8 text"));
  }
  std::string reason = request.reason().empty() ? "deleted" : request.reason();
  if (!request.purge()) {
    uint32_t closed = hub_->Close(request.user_id(), request.connection_id(), kCloseNormal, reason);
    if (closed == 0) {
      return done(absl::NotFoundError(
          request.connection_id().empty()
              ? absl::StrCat("user '", request.user_id(), "' has no live connection")
              : absl::StrCat("user '", request.user_id(), "' has no live connection '",
                             request.connection_id(), "'")));
    }
    response->set_closed(closed);
    return done(absl::OkStatus());
  }
  // Purge first, so a client reconnecting right after the close gets nothing of the old stream.
  std::string user_id = request.user_id();
  std::string connection_id = request.connection_id();
  store_->Purge(user_id, [this, response, user_id, connection_id, reason = std::move(reason),
                          done = std::move(done)](absl::Status status) mutable {
    if (!status.ok()) return done(status);
    response->set_closed(hub_->Close(user_id, connection_id, kCloseNormal, reason));
    done(absl::OkStatus());
  });
}

absl::Status PushLogic::ListClients(const v1::ListClientsRequest& request,
                                    v1::ListClientsResponse* response) {
  if (!request.user_id().empty()) {
    if (absl::Status s = ValidateUserId(request.user_id()); !s.ok()) return s;
  }
  if (request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size is ", request.page_size(), "; at most 1000 are allowed"));
  }
  uint32_t page_size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  std::string after_user, after_conn;
  if (!request.page_token().empty()) {
    if (absl::Status s = DecodePageToken(request.page_token(), &after_user, &after_conn); !s.ok()) {
      return s;
    }
  }
  std::vector<ClientSnapshot> all = hub_->Snapshot(
      request.user_id().empty() ? std::nullopt
                                : std::optional<std::string_view>(request.user_id()));
  response->set_total(all.size());
  auto begin = all.begin();
  if (!request.page_token().empty()) {
    begin = std::upper_bound(all.begin(), all.end(), std::tie(after_user, after_conn),
                             [](const auto& key, const ClientSnapshot& c) {
                               return key < std::tie(c.info.user_id, c.info.connection_id);
                             });
  }
  auto end = all.end() - begin > page_size ? begin + page_size : all.end();
  for (auto it = begin; it != end; ++it) {
    v1::Client* client = response->add_clients();
    client->set_user_id(it->info.user_id);
    client->set_connection_id(it->info.connection_id);
    client->set_remote_address(it->info.remote_address);
    int64_t nanos = absl::ToUnixNanos(it->info.connected_at);
    client->mutable_connected_at()->set_seconds(nanos / 1000000000);
    client->mutable_connected_at()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
    client->set_node_id(options_.node_id);
    client->set_user_agent(it->info.user_agent);
    client->set_messages_sent(it->messages_sent);
    client->set_queued_bytes(it->queued_bytes);
  }
  if (end != all.end() && end != begin)
    response->set_next_page_token(EncodePageToken((end - 1)->info));
  return absl::OkStatus();
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// A unary reactor that counts itself in flight from the handler's start until gRPC is done with
// it (the status has been sent), so a drain never cuts off an answer.
class PushServiceImpl::Reactor final : public grpc::ServerUnaryReactor {
 public:
  explicit Reactor(std::atomic<int64_t>* inflight) : inflight_(inflight) {
    inflight_->fetch_add(1);
  }
  void Done(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override {
    inflight_->fetch_sub(1);
    delete this;
  }

 private:
  std::atomic<int64_t>* const inflight_;
};

grpc::ServerUnaryReactor* PushServiceImpl::Push(grpc::CallbackServerContext*,
                                                const v1::PushRequest* request,
                                                v1::PushResponse* response) {
  auto* reactor = new Reactor(&inflight_);
  logic_->Push(*request, response, [reactor](absl::Status status) { reactor->Done(status); });
  return reactor;
}

grpc::ServerUnaryReactor* PushServiceImpl::DeleteClient(grpc::CallbackServerContext*,
                                                        const v1::DeleteClientRequest* request,
                                                        v1::DeleteClientResponse* response) {
  auto* reactor = new Reactor(&inflight_);
  logic_->DeleteClient(*request, response,
                       [reactor](absl::Status status) { reactor->Done(status); });
  return reactor;
}

grpc::ServerUnaryReactor* PushServiceImpl::ListClients(grpc::CallbackServerContext*,
                                                       const v1::ListClientsRequest* request,
                                                       v1::ListClientsResponse* response) {
  auto* reactor = new Reactor(&inflight_);
  reactor->Done(logic_->ListClients(*request, response));
  return reactor;
}

}  // namespace push::service
