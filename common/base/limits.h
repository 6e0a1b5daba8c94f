#pragma once

#include <cstdint>

namespace push {

// The configured limits whose hits are counted in pushd_limit_hits_total{limit="<label>"} and
// logged at most once per interval (README, "Limits").
enum class Limit : int {
  kPerUser,             // upgrade refused with 429: the user is at --max_connections_per_user
  kConnections,         // upgrade refused with 503: the process is at --max_connections
  kSockets,             // TCP connection closed at accept: too many sockets (open or handshaking)
  kOpenFiles,           // accept failed for lack of file descriptors; accepting backs off
  kRequestHeaderBytes,  // request refused with 431: headers over --max_request_header_bytes
  kHandshakeTimeout,    // connection closed: no complete request within --handshake_timeout
  kFrameBytes,          // WebSocket closed with 1009: a client frame over 4096 bytes
  kQueuedBytes,         // WebSocket closed with 4008: the process's send queues over their bound
};
inline constexpr int kLimitCount = 8;

// The metric label of a limit ("per_user", ...).
const char* LimitLabel(Limit limit);

// Counts a hit of `limit` and writes a warning when none was written for that limit in the last
// 10 s; otherwise the hit is only counted and summarised in the next line.
void RecordLimitHit(Limit limit);

// Writes the summary lines that are due (hits held back for an interval). Called every second.
void FlushLimitLogs();

}  // namespace push
