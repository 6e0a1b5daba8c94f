#pragma once

// How connections end, in one place: the WebSocket close codes pushd sends (CONTRACT §3) and why
// a connection ended, as the metrics count it (pushd_disconnects_total{reason}) and the log says.

#include <cstdint>
#include <string_view>

namespace push {

enum CloseCode : uint16_t {
  kCloseNormal = 1000,         // DeleteClient, /deleteClient
  kCloseGoingAway = 1001,      // the server drains
  kCloseProtocol = 1002,       // a violation of RFC 6455 framing
  kCloseUnsupported = 1003,    // a binary frame
  kCloseBadText = 1007,        // text that is not UTF-8
  kClosePolicy = 1008,         // a client frame pushd does not accept
  kCloseTooBig = 1009,         // a client message over kMaxClientMessageBytes
  kCloseInternalError = 1011,  // the message store failed before the connection started
  kCloseTokenExpired = 4001,   // --auth=jwt: the token expired, or a refresh was refused
  kCloseSlowConsumer = 4008,   // the send queue passed --send_queue_bytes (or --max_queued_bytes)
};

// The largest message a client may send (all its fragments): CONTRACT §3's 4096 bytes.
inline constexpr uint32_t kMaxClientMessageBytes = 4096;

enum class Disconnect : uint8_t {
  kClientClosed,    // the client's close frame
  kConnectionLost,  // the socket failed or ended without a close frame
  kDeleted,         // DeleteClient, /deleteClient (1000)
  kShutdown,        // the drain (1001)
  kSlowConsumer,    // 4008
  kPongTimeout,     // no pong within --pong_timeout
  kProtocol,        // a protocol violation, a frame pushd does not accept (1002, 1003, 1007, 1008,
                    // 1009)
  kToken,           // the token expired or a refresh was refused (4001)
  kError,           // the store failed before the start (1011)
};
inline constexpr int kDisconnectCount = 9;

// The metric's label: client, deleted, shutdown, slow_consumer, pong_timeout, protocol, error
// (a closed client and a lost connection are both "client"; a token, "protocol").
std::string_view DisconnectLabel(Disconnect why);
// The log's words ("client closed", "connection lost", "pong timeout", ...).
std::string_view DisconnectText(Disconnect why);

}  // namespace push
