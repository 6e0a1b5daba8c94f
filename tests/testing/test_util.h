#pragma once

#include <grpcpp/client_context.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "push/v1/push.grpc.pb.h"

namespace push::testing {

// Polls `condition` until it holds or `timeout` passes; returns whether it held.
inline bool WaitFor(const std::function<bool()>& condition,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return condition();
}

// The value of one series in a /metrics body (`name` or `name{labels}`); UINT64_MAX when absent.
inline uint64_t MetricValue(const std::string& body, const std::string& series) {
  size_t pos = body.find("\n" + series + " ");
  if (pos == std::string::npos) return UINT64_MAX;
  return std::stoull(body.substr(pos + series.size() + 2));
}

inline int64_t MillisSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t)
      .count();
}

inline grpc::Status DoPush(v1::PushService::Stub& stub, const std::string& user,
                           const std::string& data, v1::PushResponse* response = nullptr,
                           const std::string& message_id = "", uint32_t ttl_seconds = 0) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::PushRequest req;
  req.set_user_id(user);
  req.set_data(data);
  req.set_message_id(message_id);
  req.set_ttl_seconds(ttl_seconds);
  v1::PushResponse local;
  return stub.Push(&ctx, req, response ? response : &local);
}

inline v1::ListClientsResponse DoList(v1::PushService::Stub& stub, const std::string& user = "",
                                      uint32_t page_size = 0, const std::string& token = "",
                                      grpc::Status* status = nullptr) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListClientsRequest req;
  req.set_user_id(user);
  req.set_page_size(page_size);
  req.set_page_token(token);
  v1::ListClientsResponse res;
  grpc::Status s = stub.ListClients(&ctx, req, &res);
  if (status) *status = s;
  return res;
}

inline grpc::Status DoDelete(v1::PushService::Stub& stub, const std::string& user,
                             v1::DeleteClientResponse* response = nullptr,
                             const std::string& connection_id = "", bool purge = false,
                             const std::string& reason = "") {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::DeleteClientRequest req;
  req.set_user_id(user);
  req.set_connection_id(connection_id);
  req.set_purge(purge);
  req.set_reason(reason);
  v1::DeleteClientResponse local;
  return stub.DeleteClient(&ctx, req, response ? response : &local);
}

}  // namespace push::testing
