#include "services/push_service.h"

#include <algorithm>
#include <deque>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/ids.h"
#include "common/base/metrics.h"
#include "common/json/json.h"

namespace push::service {
namespace {

constexpr uint32_t kDefaultPageSize = 100;
constexpr uint32_t kMaxPageSize = 1000;
constexpr size_t kMaxReasonBytes = 120;
constexpr size_t kMaxConnectionIdBytes = 64;
constexpr int kMaxBroadcastUsers = 10000;
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

PushLogic::PushLogic(PushOptions options, store::Store* store, Directory* directory)
    : options_(std::move(options)), store_(store), directory_(directory) {}

absl::Status PushLogic::CheckPayload(const std::string& data, const std::string& message_id) {
  if (draining_.load(std::memory_order_relaxed)) {
    return absl::UnavailableError("server is shutting down; retry on another instance");
  }
  if (data.size() > options_.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("data is ", data.size(), " bytes; the limit is ",
                                                   options_.max_message_bytes,
                                                   " (--max_message_bytes)"));
  }
  if (absl::Status s = ValidateJson(data); !s.ok()) return s;
  return ValidateMessageId(message_id);
}

absl::Duration PushLogic::Ttl(uint32_t ttl_seconds) const {
  return ttl_seconds == 0 ? options_.history_ttl : absl::Seconds(ttl_seconds);
}

void PushLogic::Push(const v1::PushRequest& request, v1::PushResponse* response,
                     absl::AnyInvocable<void(absl::Status)> done) {
  absl::Status status = ValidateUserId(request.user_id());
  if (status.ok()) status = CheckPayload(request.data(), request.message_id());
  if (!status.ok()) {
    GlobalMetrics().pushes_rejected.fetch_add(1, std::memory_order_relaxed);
    return done(std::move(status));
  }
  int64_t start = Metrics::NowNanos();
  Append(request.user_id(), std::make_shared<std::string>(request.data()), request.message_id(),
         Ttl(request.ttl_seconds()), response,
         [start, done = std::move(done)](absl::Status status) mutable {
           GlobalMetrics().push_duration.Observe(Metrics::NowNanos() - start);
           done(std::move(status));
         });
}

void PushLogic::Append(const std::string& user_id, std::shared_ptr<const std::string> payload,
                       const std::string& message_id, absl::Duration ttl,
                       v1::PushResponse* response, absl::AnyInvocable<void(absl::Status)> done) {
  store::AppendRequest append;
  append.user_id = user_id;
  append.payload = std::move(payload);
  append.message_id = message_id;
  append.ttl = ttl;
  store_->Append(std::move(append), [response, done = std::move(done)](
                                        absl::StatusOr<store::AppendResult> result) mutable {
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
      response->set_delivered(result->delivered);
    }
    done(absl::OkStatus());
  });
}

void PushLogic::Broadcast(const v1::BroadcastRequest& request, v1::BroadcastResponse* response,
                          absl::AnyInvocable<void(absl::Status)> done) {
  if (request.user_ids_size() == 0 || request.user_ids_size() > kMaxBroadcastUsers) {
    return done(absl::InvalidArgumentError(absl::StrCat("user_ids has ", request.user_ids_size(),
                                                        " entries; 1 to ", kMaxBroadcastUsers,
                                                        " are allowed")));
  }
  for (int i = 0; i < request.user_ids_size(); ++i) {
    if (absl::Status s = ValidateUserId(request.user_ids(i)); !s.ok()) {
      return done(absl::InvalidArgumentError(absl::StrCat("user_ids[", i, "]: ", s.message())));
    }
  }
  if (absl::Status s = CheckPayload(request.data(), request.message_id()); !s.ok()) {
    return done(s);
  }
  // One id for all recipients: it also makes a user listed twice get the message once.
  std::string id = request.message_id().empty() ? NewMessageId() : request.message_id();
  auto payload = std::make_shared<const std::string>(request.data());
  absl::Duration ttl = Ttl(request.ttl_seconds());
  for (int i = 0; i < request.user_ids_size(); ++i) response->add_results();

  // The appends may complete on other threads: the last one to finish answers.
  struct State {
    std::atomic<int> remaining;
    absl::Mutex mu;
    absl::Status status ABSL_GUARDED_BY(mu);
    v1::BroadcastResponse* response;
    absl::AnyInvocable<void(absl::Status)> done;
  };
  auto state = std::make_shared<State>();
  state->remaining = request.user_ids_size();
  state->response = response;
  state->done = std::move(done);
  for (int i = 0; i < request.user_ids_size(); ++i) {
    Append(request.user_ids(i), payload, id, ttl, response->mutable_results(i),
           [state](absl::Status status) {
             if (!status.ok()) {
               absl::MutexLock lock(&state->mu);
               if (state->status.ok()) state->status = status;
             }
             if (state->remaining.fetch_sub(1) != 1) return;
             uint64_t delivered = 0;
             for (const auto& r : state->response->results()) delivered += r.delivered();
             state->response->set_delivered(delivered);
             absl::Status final_status;
             {
               absl::MutexLock lock(&state->mu);
               final_status = state->status;
             }
             state->done(final_status);
           });
  }
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
  auto close = [this, response, user_id = request.user_id(),
                connection_id = request.connection_id(), reason = std::move(reason),
                purge = request.purge()](absl::AnyInvocable<void(absl::Status)> done) mutable {
    directory_->Close(user_id, connection_id, kCloseNormal, std::move(reason),
                      [response, user_id, connection_id, purge,
                       done = std::move(done)](absl::StatusOr<uint32_t> closed) mutable {
                        if (!closed.ok()) return done(closed.status());
                        if (*closed == 0 && !purge) {
                          return done(absl::NotFoundError(
                              connection_id.empty()
                                  ? absl::StrCat("user '", user_id, "' has no live connection")
                                  : absl::StrCat("user '", user_id, "' has no live connection '",
                                                 connection_id, "'")));
                        }
                        response->set_closed(*closed);
                        done(absl::OkStatus());
                      });
  };
  if (!request.purge()) return close(std::move(done));
  // Purge first, so a client reconnecting right after the close gets nothing of the old stream.
  store_->Purge(request.user_id(),
                [close = std::move(close), done = std::move(done)](absl::Status status) mutable {
                  if (!status.ok()) return done(status);
                  close(std::move(done));
                });
}

void PushLogic::ListClients(const v1::ListClientsRequest& request,
                            v1::ListClientsResponse* response,
                            absl::AnyInvocable<void(absl::Status)> done) {
  if (!request.user_id().empty()) {
    if (absl::Status s = ValidateUserId(request.user_id()); !s.ok()) return done(s);
  }
  if (request.page_size() > kMaxPageSize) {
    return done(absl::InvalidArgumentError(
        absl::StrCat("page_size is ", request.page_size(), "; at most 1000 are allowed")));
  }
  uint32_t page_size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  std::string after_user, after_conn;
  if (!request.page_token().empty()) {
    if (absl::Status s = DecodePageToken(request.page_token(), &after_user, &after_conn); !s.ok()) {
      return done(s);
    }
  }
  ListRequest list;
  if (!request.user_id().empty()) list.user_id = request.user_id();
  if (!request.page_token().empty())
    list.after.emplace(std::move(after_user), std::move(after_conn));
  list.limit = page_size;
  directory_->List(std::move(list),
                   [response, done = std::move(done)](absl::StatusOr<ClientPage> page) mutable {
                     if (!page.ok()) return done(page.status());
                     FillPage(*page, response);
                     done(absl::OkStatus());
                   });
}

void PushLogic::GetReceipts(const v1::GetReceiptsRequest& request,
                            v1::GetReceiptsResponse* response,
                            absl::AnyInvocable<void(absl::Status)> done) {
  if (absl::Status s = ValidateUserId(request.user_id()); !s.ok()) return done(s);
  const bool by_id = !request.message_id().empty();
  if (by_id == (request.seq() != 0)) {
    return done(absl::InvalidArgumentError(
        by_id ? "give either message_id or seq, not both"
              : "give the message: its message_id (from Push) or its seq (at least 1)"));
  }
  if (by_id) {
    if (absl::Status s = ValidateMessageId(request.message_id()); !s.ok()) return done(s);
  }
  store::ReceiptsRequest receipts;
  receipts.user_id = request.user_id();
  receipts.message_id = request.message_id();
  receipts.seq = request.seq();
  store_->Receipts(std::move(receipts), [response, done = std::move(done)](
                                            absl::StatusOr<store::ReceiptsResult> result) mutable {
    if (!result.ok()) return done(result.status());
    response->set_seq(result->seq);
    for (const store::DeviceReceipt& r : result->receipts) {
      v1::Receipt* receipt = response->add_receipts();
      receipt->set_device_id(r.device_id);
      receipt->set_state(r.acked ? v1::Receipt::ACKED : v1::Receipt::WRITTEN);
      receipt->set_cursor(r.cursor);
    }
    done(absl::OkStatus());
  });
}

void PushLogic::FillPage(const ClientPage& page, v1::ListClientsResponse* response) {
  response->set_total(page.total);
  for (const ClientRecord& record : page.clients) {
    const ClientSnapshot& c = record.client;
    v1::Client* client = response->add_clients();
    client->set_user_id(c.info.user_id);
    client->set_connection_id(c.info.connection_id);
    client->set_remote_address(c.info.remote_address);
    int64_t nanos = absl::ToUnixNanos(c.info.connected_at);
    client->mutable_connected_at()->set_seconds(nanos / 1000000000);
    client->mutable_connected_at()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
    client->set_node_id(record.node_id);
    client->set_user_agent(c.info.user_agent);
    client->set_messages_sent(c.messages_sent);
    client->set_queued_bytes(c.queued_bytes);
    client->set_device_id(c.info.device_id);
  }
  if (page.more && page.resume_after) {
    ConnectionInfo last;
    last.user_id = page.resume_after->first;
    last.connection_id = page.resume_after->second;
    response->set_next_page_token(EncodePageToken(last));
  } else if (page.more && !page.clients.empty()) {
    response->set_next_page_token(EncodePageToken(page.clients.back().client.info));
  }
}

PushServiceImpl::PushServiceImpl(PushLogic* logic, const ApiKey* api_key,
                                 absl::Duration default_deadline)
    : logic_(logic),
      api_key_(api_key),
      default_deadline_(default_deadline),
      health_({std::string(v1::PushService::service_full_name())}) {
  RouteProtobufLogs();
  Serve(&push_, &RawService::RequestPush, &PushLogic::Push);
  Serve(&broadcast_, &RawService::RequestBroadcast, &PushLogic::Broadcast);
  Serve(&delete_client_, &RawService::RequestDeleteClient, &PushLogic::DeleteClient);
  Serve(&list_clients_, &RawService::RequestListClients, &PushLogic::ListClients);
  Serve(&get_receipts_, &RawService::RequestGetReceipts, &PushLogic::GetReceipts);
}

PushServiceImpl::~PushServiceImpl() { Stop(); }

void PushServiceImpl::EndWatches() {
  ending_watches_.store(true);
  if (feed_ != nullptr) feed_->WakeAll();
}

absl::Status PushServiceImpl::Authorize(grpc::ServerContext* context) const {
  if (api_key_ == nullptr) return absl::OkStatus();
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  if (it != metadata.end() &&
      api_key_->Check(std::string_view(it->second.data(), it->second.size()))) {
    return absl::OkStatus();
  }
  return absl::UnauthenticatedError(
      "missing or wrong API key: send metadata 'authorization: Bearer <key>'");
}

template <class Request, class Response, class RequestMethod>
void PushServiceImpl::Serve(UnaryMethod<Request, Response>* method, RequestMethod request,
                            void (PushLogic::*serve)(const Request&, Response*,
                                                     absl::AnyInvocable<void(absl::Status)>)) {
  method->request = [this, request](grpc::ServerContext* context, grpc::ByteBuffer* r,
                                    grpc::ServerAsyncResponseWriter<grpc::ByteBuffer>* writer,
                                    grpc::ServerCompletionQueue* queue, void* tag) {
    (service_.*request)(context, r, writer, queue, queue, tag);
  };
  method->handle = [this, serve](grpc::ServerContext* context, const Request& r, Response* response,
                                 absl::AnyInvocable<void(absl::Status)> done) {
    if (absl::Status s = Authorize(context); !s.ok()) return done(std::move(s));
    (logic_->*serve)(r, response, std::move(done));
  };
  method->inflight = &inflight_;
  method->default_deadline = default_deadline_;
  method->threads = &queues_;
}

void PushServiceImpl::Register(grpc::ServerBuilder* builder, int threads) {
  builder->RegisterService(&service_);
  health_.Register(builder);
  queues_.Add(builder, threads);
}

void PushServiceImpl::Stop() { queues_.Stop(); }

// PushStream: each request is pushed as it arrives; responses go out in request order, one write
// in flight. Reading pauses while too many responses wait, so a fast sender cannot grow memory.
// Each request counts as in flight until answered (an idle open stream does not hold a drain).
// Events: arrived_ (a call came, or not ok: shutting down), read_, written_, finished_; a push's
// answer comes from PushLogic, inline or on a store thread. The call frees itself once it has
// finished, no read is outstanding and no push is pending.
class PushServiceImpl::StreamCall {
 public:
  StreamCall(PushServiceImpl* service, grpc::ServerCompletionQueue* queue)
      : service_(service), live_(&service->queues_), queue_(queue), stream_(&context_) {
    service_->service_.RequestPushStream(&context_, &stream_, queue_, queue_, &arrived_);
  }

 private:
  struct Slot {
    v1::PushResponse response;
    absl::Status status;
    bool done = false;
  };
  static constexpr size_t kMaxWaiting = 256;

  void OnArrived(bool ok) {
    if (!ok) {  // the server is shutting down: no call came
      delete this;
      return;
    }
    new StreamCall(service_, queue_);
    absl::Status authorized = service_->Authorize(&context_);
    absl::MutexLock lock(&mu_);
    if (!authorized.ok()) {
      finishing_ = true;
      stream_.Finish(ToGrpcStatus(authorized), &finished_);
      return;
    }
    StartRead();
  }

  void OnRead(bool ok) {
    Slot* slot = nullptr;
    uint64_t index = 0;
    bool take, free = false;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!ok) reads_done_ = true;
      // A request that raced the end, or came after one that failed, is not taken.
      take = ok && !finishing_ && !failed_ && !rejected_;
      if (take) {
        service_->inflight_.fetch_add(1, std::memory_order_relaxed);
        slots_.emplace_back();
        slot = &slots_.back();
        index = next_index_++;
        ++pending_;
      } else {
        Next();
        free = Release();
      }
    }
    if (!take) {
      if (free) delete this;
      return;
    }
    // Push copies what it needs from request_ before returning, so the next read may reuse it.
    auto answer = [this, slot, index](absl::Status status) {
      bool free;
      {
        absl::MutexLock lock(&mu_);
        slot->done = true;
        --pending_;
        if (!status.ok()) {
          // Validation answers inline, before the next read starts: nothing after a bad request
          // is pushed. (A store failure answers later; requests already sent stand.)
          rejected_ = true;
          slot->status = absl::Status(
              status.code(), absl::StrCat("request #", index, " (from 0): ", status.message()));
        }
        Next();
        free = Release();
      }
      if (free) delete this;
    };
    if (absl::Status parsed = ParseRequest(&raw_request_, &request_); !parsed.ok()) {
      answer(std::move(parsed));  // like a request that fails validation: the stream ends
    } else {
      service_->logic_->Push(request_, &slot->response, std::move(answer));
    }
    absl::MutexLock lock(&mu_);
    if (slots_.size() < kMaxWaiting && !finishing_ && !failed_ && !rejected_) {
      StartRead();
    } else {
      read_paused_ = true;
    }
  }

  void OnWritten(bool ok) {
    bool free;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      slots_.pop_front();
      service_->inflight_.fetch_sub(1, std::memory_order_relaxed);
      if (!ok) {
        // The client is gone: write nothing more, finish once pending pushes are done.
        failed_ = true;
        failure_ = grpc::Status::CANCELLED;
      } else if (read_paused_ && slots_.size() < kMaxWaiting / 2 && !finishing_ && !failed_ &&
                 !rejected_) {
        read_paused_ = false;
        StartRead();
      }
      Next();
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

  void StartRead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    reading_ = true;
    stream_.Read(&raw_request_, &read_);
  }

  // The next step: write the next finished response in order, or finish.
  void Next() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finishing_) return;
    if (!failed_ && !slots_.empty() && slots_.front().done && !slots_.front().status.ok()) {
      failed_ = true;
      failure_ = ToGrpcStatus(slots_.front().status);
    }
    if (failed_) {
      for (const Slot& slot : slots_) {
        if (!slot.done) return;
      }
      finishing_ = true;
      stream_.Finish(failure_, &finished_);
      return;
    }
    if (!slots_.empty()) {
      Slot& front = slots_.front();
      if (!front.done) return;
      writing_ = true;
      // When the next answer is ready too, this one may wait in gRPC's buffer: the answers that
      // are ready go out together, in one socket write, with the last (which has no hint).
      grpc::WriteOptions options;
      if (slots_.size() > 1 && slots_[1].done) options.set_buffer_hint();
      stream_.Write(SerializeResponse(front.response), options, &written_);
      return;
    }
    if (reads_done_) {
      finishing_ = true;
      stream_.Finish(grpc::Status::OK, &finished_);
    }
  }

  // Whether the call is over for good (finished, no read and no push outstanding); then the
  // caller frees it, once. Requests never answered (the stream failed) stop counting.
  bool Release() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (dead_ || !finished_done_ || reading_ || writing_ || pending_ > 0) return false;
    dead_ = true;
    service_->inflight_.fetch_sub(static_cast<int64_t>(slots_.size()), std::memory_order_relaxed);
    return true;
  }

  PushServiceImpl* const service_;
  LiveCall live_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer> stream_;
  grpc::ByteBuffer raw_request_;
  v1::PushRequest request_;
  MemberTag<StreamCall, &StreamCall::OnArrived> arrived_{this};
  MemberTag<StreamCall, &StreamCall::OnRead> read_{this};
  MemberTag<StreamCall, &StreamCall::OnWritten> written_{this};
  MemberTag<StreamCall, &StreamCall::OnFinished> finished_{this};
  absl::Mutex mu_;
  std::deque<Slot> slots_ ABSL_GUARDED_BY(mu_);  // deque: pointers stay valid on push_back
  uint64_t next_index_ ABSL_GUARDED_BY(mu_) = 0;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;  // pushes not answered yet
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_done_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;    // finish with failure_ once no push is pending
  bool rejected_ ABSL_GUARDED_BY(mu_) = false;  // a request failed: take no more
  bool dead_ ABSL_GUARDED_BY(mu_) = false;      // Release said yes: being freed
  grpc::Status failure_ ABSL_GUARDED_BY(mu_);
};

void PushServiceImpl::Start() {
  for (const auto& queue : queues_.queues()) {
    grpc::ServerCompletionQueue* q = queue.get();
    // Calls requested ahead per queue, so that a burst does not wait for the thread to ask for
    // the next one.
    for (int i = 0; i < 16; ++i) UnaryCall<v1::PushRequest, v1::PushResponse>::Listen(&push_, q);
    for (int i = 0; i < 4; ++i) {
      UnaryCall<v1::BroadcastRequest, v1::BroadcastResponse>::Listen(&broadcast_, q);
    }
    for (int i = 0; i < 2; ++i) {
      UnaryCall<v1::DeleteClientRequest, v1::DeleteClientResponse>::Listen(&delete_client_, q);
      UnaryCall<v1::ListClientsRequest, v1::ListClientsResponse>::Listen(&list_clients_, q);
      UnaryCall<v1::GetReceiptsRequest, v1::GetReceiptsResponse>::Listen(&get_receipts_, q);
      new StreamCall(this, q);
      StartWatchCall(q);
    }
  }
  health_.Listen(&queues_);
  queues_.Start();
}

}  // namespace push::service
