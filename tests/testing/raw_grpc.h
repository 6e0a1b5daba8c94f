#pragma once

// gRPC calls as any generic client would make them: raw protobuf bytes, no generated stubs (for
// the standard services next to PushService, health and reflection, and for requests that no
// generated stub would send).

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <string>
#include <vector>

namespace push::testing {

// One request and its answer on `method` (e.g. "/grpc.health.v1.Health/Check") at
// 127.0.0.1:port, with a 10 s deadline. A streaming method answers one request with one
// response. On success the response's bytes are appended to `response`.
grpc::Status RawUnaryCall(int port, const std::string& method, const std::string& request,
                          std::string* response);

// What RawExchange got: the call's status and every response, in order.
struct RawExchangeResult {
  grpc::Status status;
  std::vector<std::string> responses;
};

// Sends `requests` as the messages of one call of `method` at 127.0.0.1:port (any kind: a unary
// method takes one), closes the sending side and reads every response until the status; 10 s
// deadline.
RawExchangeResult RawExchange(int port, const std::string& method,
                              const std::vector<std::string>& requests);

// Appends the bytes of `buffer` to `out`; false when they cannot be read.
bool AppendBytes(const grpc::ByteBuffer& buffer, std::string* out);

}  // namespace push::testing
