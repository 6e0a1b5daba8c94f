#include "common/base/close.h"

namespace push {

std::string_view DisconnectLabel(Disconnect why) {
  switch (why) {
    case Disconnect::kClientClosed:
    case Disconnect::kConnectionLost:
      return "client";
    case Disconnect::kDeleted:
      return "deleted";
    case Disconnect::kShutdown:
      return "shutdown";
    case Disconnect::kSlowConsumer:
      return "slow_consumer";
    case Disconnect::kPongTimeout:
      return "pong_timeout";
    case Disconnect::kProtocol:
    case Disconnect::kToken:
      return "protocol";
    case Disconnect::kError:
      return "error";
  }
  return "error";
}

std::string_view DisconnectText(Disconnect why) {
  switch (why) {
    case Disconnect::kClientClosed:
      return "client closed";
    case Disconnect::kConnectionLost:
      return "connection lost";
    case Disconnect::kDeleted:
      return "deleted";
    case Disconnect::kShutdown:
      return "shutdown";
    case Disconnect::kSlowConsumer:
      return "slow consumer";
    case Disconnect::kPongTimeout:
      return "pong timeout";
    case Disconnect::kProtocol:
      return "protocol violation";
    case Disconnect::kToken:
      return "token";
    case Disconnect::kError:
      return "store unavailable";
  }
  return "unknown";
}

}  // namespace push
