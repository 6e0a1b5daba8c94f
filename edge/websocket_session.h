#pragma once

// Internal to edge/: includes Beast. Nothing outside edge/ includes this header.

#include <sys/types.h>
#include <sys/uio.h>

#include <array>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/delivery/hub.h"
#include "common/delivery/store.h"
#include "edge/edge_server.h"
#include "edge/edge_stream.h"
#include "edge/frame_reader.h"
#include "edge/queue_budget.h"
#include "edge/send_queue.h"
#include "edge/sequencer.h"
#include "edge/timer_wheel.h"

namespace push::edge {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;

// Counts shared by the edge's sessions (owned by EdgeServer::Impl).
struct SessionCounters {
  std::atomic<int64_t> open_sessions{0};  // WebSockets past the handshake and not finished
  std::atomic<int64_t> slots{0};          // WebSockets counted against --max_connections
  std::atomic<int64_t> sockets{0};        // accepted sockets held by HTTP or WebSocket sessions
  // --max_queued_bytes over every session's send queue (null: no bound).
  QueueBudget* budget = nullptr;
};

struct SessionParams {
  ConnectionInfo info;
  bool compat = false;     // /getPushNews: bare data frames, no envelope
  bool ack = false;        // the cursor moves on client acks instead of socket writes
  bool user_slot = false;  // holds a Hub::Reserve slot of the user until registered
  std::optional<uint64_t> since;
  // --auth=jwt: when the token stops being valid (exp + leeway); the connection closes with 4001
  // then, unless a refresh frame moves it.
  absl::Time token_valid_until = absl::InfiniteFuture();
};

// One WebSocket connection over `Stream`: EdgeStream for plain connections, a TLS stream (see
// tls_session.cc) for wss://. A template rather than a virtual transport so that a plain
// connection carries nothing of TLS.
//
// Threads: the session's handlers run on its strand (the socket's executor) and hold `mu_` while
// they touch its state. On a plain connection, Deliver from a publishing thread takes `mu_` too
// and, in the common case (live, in order, room in the queue), queues the message and writes it to
// the socket itself, without a hand-off: the send lane below. Everything else it posts to the
// strand, which alone calls into Beast, timers and asio operations.
//
// Plain connections speak WebSocket themselves, without Beast's stream (see EdgeStream): the
// send lane writes every frame, the upgrade's 101 response first and the close frame last, with
// one non-blocking sendmsg for all that is queued (SendQueue); FrameReader reads the client's
// frames from a buffer of the thread's once the socket is readable. TLS connections go through
// Beast's stream: it reads, and writes every frame from the strand, one at a time.
template <class Stream>
class WebSocketSession final : public Connection,
                               public TimerWheel::Client,
                               public std::enable_shared_from_this<WebSocketSession<Stream>> {
 public:
  // `stream` is connected (and, for TLS, past its handshake) with no timeouts of its own: the
  // session sets the WebSocket's. The session holds one of `counters->slots`, taken by the
  // caller, until it finishes.
  WebSocketSession(Stream&& stream, SessionParams params, const EdgeOptions& options,
                   store::Store* store, Hub* hub, SessionCounters* counters, TimerWheel* wheel);
  ~WebSocketSession() override;

  // `early`: bytes the client sent right behind the request (its first frames), for a stream
  // that does not hold them itself (TLS; EdgeStream takes them in SetEarlyBytes).
  void Run(http::request<http::string_body> request, std::string early = {});

  // Connection:
  const ConnectionInfo& info() const override { return params_.info; }
  // Thread-safe.
  void Deliver(MessagePtr message) override ABSL_LOCKS_EXCLUDED(mu_);
  void Close(uint16_t code, std::string reason) override ABSL_LOCKS_EXCLUDED(mu_);
  void Resync() override ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t messages_sent() const override { return messages_sent_.load(std::memory_order_relaxed); }
  uint64_t queued_bytes() const override { return queued_bytes_.load(std::memory_order_relaxed); }

 private:
  static constexpr bool kSendLane = std::is_same_v<Stream, EdgeStream>;

  // Beast's control callback (a pong answers our heartbeat). Not checked: Beast calls it on the
  // strand from inside a WebSocket read, under mu_ when a handler starts the read and without it
  // when the read goes on; the strand orders it with the handlers, and Deliver, the one caller
  // off the strand, never touches awaiting_pong_ (nor does the timer wheel's thread on TLS:
  // OnWheelTimer posts every TLS turn to the strand).
  void OnControlFrame(websocket::frame_type kind) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // TLS: Beast's handshake is done.
  void OnAccept(beast::error_code ec) ABSL_LOCKS_EXCLUDED(mu_);
  // The connection is open (its 101 response written or queued): registers it, starts the
  // replay, the reads and the heartbeat.
  void Opened() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the next client frames: a plain connection waits for the socket to become readable
  // (OnReadable), TLS starts a WebSocket read (ReadFrame).
  void DoRead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plain: reads what has arrived into FrameReader, then waits again.
  void OnReadable(beast::error_code ec) ABSL_LOCKS_EXCLUDED(mu_);
  // Plain: what FrameReader found.
  void OnFrame(const FrameReader::Event& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plain: the peer's close frame (`code` 0: it gave none). Answered with a close frame unless
  // ours went first; then the connection ends.
  void CloseReceived(uint16_t code, std::string_view reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plain: sends a close frame with `code` and `reason` (unless ours is queued already) and ends
  // once it is written, without waiting for an answer: the peer's close, or its protocol failure.
  void SendCloseThenEnd(uint16_t code, std::string reason, Disconnect why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plain: our close frame is on the wire (the lane is closed).
  void OnCloseWritten() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plain: the close handshake is over (or failed): FIN, then End.
  void EndAfterClose() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // TLS: the WebSocket read of the next frame (or the rest of one).
  void ReadFrame() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnRead(beast::error_code ec, std::size_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  void HandleClientFrame(std::string_view text) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleRefresh(const std::string& token) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void ReadStore() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnStoreRead(absl::StatusOr<store::ReadResult> result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnLive(MessagePtr message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The sequencer's output: the frames it says to send go into the send queue.
  class Frames;
  // `ahead`: before every frame not yet started (pings and pongs), else at the end.
  void EnqueueFrame(OutFrame frame, bool ahead = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `message` fits the send queue (the slow-consumer rule).
  bool HasRoom(const Message& message) const;
  // Writes what is queued: the send lane on plain connections, one Beast write on TLS.
  void DoWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnWrite(beast::error_code ec, std::size_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  // Send lane: writes what is queued with non-blocking sendmsg calls until the queue is empty or
  // the socket is full; then the strand waits for it to drain (on_strand: this is the strand;
  // otherwise that is posted to it).
  void FlushLane(bool on_strand) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnLaneBlocked(bool lost) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnWritable(beast::error_code ec) ABSL_LOCKS_EXCLUDED(mu_);
  // The lane went idle on the strand: start a WebSocket read that waited for it, send a pending
  // close frame, continue a replay.
  void OnLaneIdle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The messages among the frames one write took: counted and timed as each leaves the queue,
  // then booked once for the write (FramesSent).
  struct SentFrames {
    uint64_t messages = 0;
    uint64_t last_seq = 0;
    int64_t now_ns = 0;  // read once, at the first live message
    void Add(const OutFrame& frame);
  };
  // Bookkeeping for frames that reached the socket.
  void FramesSent(const SentFrames& sent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `bytes` left the send queue (written or dropped): the session's and the process's counts.
  void Dequeued(uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A write failed: the connection is gone (or its close handshake ends here).
  void WriteFailed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeContinueReplay() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void ScheduleTimer(absl::Duration after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The next heartbeat or token deadline.
  absl::Time NextWake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // On the wheel's thread: on the send lane, what needs no strand is done there (a stale entry,
  // a deadline that moved, a heartbeat ping); the rest, and every TLS turn, is posted to OnTimer.
  void OnWheelTimer(int64_t due) override ABSL_LOCKS_EXCLUDED(mu_);
  // Returns false, having changed nothing, when `on_strand` is false (the send lane only) and
  // what is due needs the strand (a close, a ping behind a replay).
  bool OnTimer(int64_t due, bool on_strand) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes our heartbeat ping, or a pong answering a client's ping taken at the socket. Off the
  // strand (`on_strand` false) only on the send lane.
  void SendControl(bool ping, std::string payload, bool on_strand = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The timer of the close handshake and of the linger after it, made when first needed: an
  // open connection's deadlines are on the edge's TimerWheel.
  net::steady_timer& CloseTimer() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closing. A connection ends one of two ways, and End runs once either way:
  //   StartClose ─▶ (queue empties) MaybeSendClose ─▶ peer's close or kCloseTimeout ─▶ End
  //   Abort (the socket is gone, or the peer never answered) ─────────────────────────▶ End
  // On a plain connection the close frame is the lane's last; the end of a close handshake
  // (either side's) or a failure sends FIN then (OnCloseWritten, CloseReceived).
  //
  // Stops delivery and closes with `code` once the queue is empty (counted as `why`); `flush`
  // keeps what is queued.
  void StartClose(uint16_t code, std::string reason, Disconnect why, bool flush = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the close frame once the last queued frame is out (phase kClosing → kCloseSent).
  void MaybeSendClose() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes the TCP socket at once (no handshake) and ends.
  void Abort(Disconnect why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The connection is over (phase kEnded): unregisters, gives back the slots, counts `why` unless
  // StartClose counted its own, and closes the socket after a short linger.
  void End(Disconnect why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives back the --max_connections slot and the user's reserved slot, if still held.
  void ReleaseSlots() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  struct Nothing {
    Nothing() = default;
    explicit Nothing(uint32_t) {}
  };
  // Plain: the socket; TLS: Beast's WebSocket stream over it.
  std::conditional_t<kSendLane, EdgeStream, websocket::stream<Stream, /*deflateSupported=*/false>>
      ws_;
  SessionParams params_;
  const EdgeOptions& options_;
  store::Store* const store_;
  Hub* const hub_;
  SessionCounters* const counters_;
  TimerWheel* const wheel_;
  // The wheel tick of the latest ScheduleTimer; older ones are stale.
  int64_t wake_tick_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<net::steady_timer> close_timer_ ABSL_GUARDED_BY(mu_);
  // Plain: the client's frames, read as they come; TLS: the message Beast reads into.
  [[no_unique_address]] std::conditional_t<kSendLane, FrameReader, Nothing> reader_
      ABSL_GUARDED_BY(mu_){kMaxClientMessageBytes};
  [[no_unique_address]] std::conditional_t<kSendLane, Nothing, beast::flat_buffer> read_buffer_
      ABSL_GUARDED_BY(mu_);

  // Guards the session's state against Deliver on publishing threads (see the class comment).
  absl::Mutex mu_;
  SendQueue queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // TLS: a Beast write is in flight
  // The lane waits for the socket to drain (or is being torn down).
  bool lane_busy_ ABSL_GUARDED_BY(mu_) = false;
  // Our close frame is queued (the last frame the lane takes)...
  bool close_queued_ ABSL_GUARDED_BY(mu_) = false;
  // ...and written: the lane writes no more.
  bool lane_closed_ ABSL_GUARDED_BY(mu_) = false;
  // The connection ends once our close frame is written (the peer's close came, or it broke the
  // protocol), instead of waiting for the peer's answer.
  bool end_on_close_written_ ABSL_GUARDED_BY(mu_) = false;
  // Frames wait for the flush of a WriteBatch (Deliver on a thread serving a burst).
  bool lane_deferred_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> queued_bytes_{0};
  std::atomic<uint64_t> messages_sent_{0};

  // Replay and live order: what goes into queue_, and when to read the store.
  Sequencer sequencer_ ABSL_GUARDED_BY(mu_);
  uint64_t last_written_seq_ ABSL_GUARDED_BY(mu_) = 0;

  // Heartbeat and token expiry: deadlines on the edge's TimerWheel (ScheduleTimer, OnTimer).
  bool awaiting_pong_ ABSL_GUARDED_BY(mu_) = false;
  // Our ping or pong frame is being written; Beast takes one such write at a time.
  bool control_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  // A heartbeat ping waits for the control write in flight.
  bool ping_wanted_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time ping_sent_ ABSL_GUARDED_BY(mu_);
  absl::Time next_ping_ ABSL_GUARDED_BY(mu_);
  // Where the connection is in its life; it only moves forward (see StartClose).
  enum class Phase : uint8_t {
    kOpen,       // delivering
    kClosing,    // StartClose ran: delivery stopped, the close frame waits for the queue
    kCloseSent,  // our close frame is written or being written; the peer's answer ends it
    kEnded,      // End ran
  };
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kOpen;
  bool closing() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return phase_ == Phase::kClosing || phase_ == Phase::kCloseSent;
  }
  bool ended() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return phase_ == Phase::kEnded; }
  // On the heap: a close_reason holds 123 bytes of reason inline, and few connections close.
  std::unique_ptr<websocket::close_reason> pending_close_ ABSL_GUARDED_BY(mu_);
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  bool holds_slot_ ABSL_GUARDED_BY(mu_) = true;
  // Set by StartClose; what End counts when the close began there.
  Disconnect close_why_ ABSL_GUARDED_BY(mu_) = Disconnect::kConnectionLost;
};

// Instantiated in websocket_session.cc.
extern template class WebSocketSession<EdgeStream>;

}  // namespace push::edge
