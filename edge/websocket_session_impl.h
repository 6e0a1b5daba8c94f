#pragma once

// The WebSocketSession template's member definitions. Included only by the files that
// instantiate it: websocket_session.cc (plain TCP) and tls_session.cc (TLS).

#include <sys/socket.h>

#include <atomic>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket.hpp>
#include <cerrno>
#include <new>
#include <sstream>

#include "common/base/limits.h"
#include "common/base/metrics.h"
#include "common/base/strings.h"
#include "common/base/write_batch.h"
#include "edge/websocket_session.h"
#include "edge/wire_frames.h"
#include "spdlog/spdlog.h"

namespace push::edge {

// How long a close handshake may take before the socket is simply closed; a peer that stopped
// reading never answers, and its stuck write must not hold the connection forever.
inline constexpr absl::Duration kCloseTimeout = absl::Seconds(10);
// Once open, a close handshake we start waits this long for the peer's reply before TCP goes.
// Generous: a peer whose reply comes later (a slow network, a loaded client) gets its socket
// closed under it and sees an abnormal end (1006) instead of our close code. 500 ms did that in
// the drain test on a loaded machine; the drain and --drain_timeout still bound it.
inline constexpr auto kCloseHandshakeTimeout = std::chrono::milliseconds(5000);
inline constexpr size_t kReplayPageMessages = 256;
inline constexpr auto kLinger = std::chrono::seconds(1);
inline constexpr size_t kReadChunk = 128;  // TLS

// The allocator of the operation an idle connection keeps pending for as long as it lives (the
// wait for readability, or the WebSocket read on TLS and mid-message): it gets a block of its own
// size from the heap. Asio's default recycles one thread's freed blocks for the next operation
// that fits, so a long-lived read would sit in the larger block a handshake's response write left
// behind (measured with heaptrack: ~720 bytes per connection for a read of ~590).
template <class T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <class U>
  ExactAllocator(const ExactAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p); }
  template <class U>
  bool operator==(const ExactAllocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const ExactAllocator<U>&) const noexcept {
    return false;
  }
};

template <class Handler>
auto WithExactAllocator(Handler&& handler) {
  return net::bind_allocator(ExactAllocator<void>(), std::forward<Handler>(handler));
}

// When a new connection's first heartbeat ping is due: between half an interval and one, spread
// over connections by the golden-ratio sequence of a process-wide counter, so that connections
// that arrived together (a deploy, a reconnect storm) do not all ping in the same tick, forever.
// Deterministic: the k-th connection always gets the same phase.
inline absl::Duration FirstPingDelay(absl::Duration interval) {
  static std::atomic<uint64_t> counter{0};
  constexpr double kGoldenFraction = 0.6180339887498949;
  uint64_t k = counter.fetch_add(1, std::memory_order_relaxed);
  double phase = static_cast<double>(k) * kGoldenFraction;
  phase -= static_cast<double>(static_cast<uint64_t>(phase));
  return interval * (0.5 + 0.5 * phase);
}

inline std::chrono::nanoseconds ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(std::max(d, absl::ZeroDuration()));
}

// Closes the TCP socket under any stream stack at once (no TLS or WebSocket goodbye).
template <class Stream>
void CloseTcpSocket(Stream& stream) {
  beast::error_code ignored;
  auto& lowest = beast::get_lowest_layer(stream);
  if constexpr (requires { lowest.socket(); }) {
    lowest.socket().close(ignored);  // beast::tcp_stream
  } else {
    lowest.close(ignored);  // a bare socket (EdgeStream)
  }
}

template <class Stream>
WebSocketSession<Stream>::WebSocketSession(Stream&& stream, SessionParams params,
                                           const EdgeOptions& options, store::Store* store,
                                           Hub* hub, SessionCounters* counters, TimerWheel* wheel)
    : ws_(std::move(stream)),
      params_(std::move(params)),
      options_(options),
      store_(store),
      hub_(hub),
      counters_(counters),
      wheel_(wheel),
      queue_(params_.compat) {
  counters_->sockets.fetch_add(1, std::memory_order_relaxed);
}

template <class Stream>
WebSocketSession<Stream>::~WebSocketSession() {
  ReleaseSlots();  // a handshake that never completed (the I/O threads stopped first)
  counters_->sockets.fetch_sub(1, std::memory_order_relaxed);
  GlobalMetrics().send_queue_bytes.fetch_sub(static_cast<int64_t>(queued_bytes_.load()),
                                             std::memory_order_relaxed);
}

template <class Stream>
void WebSocketSession<Stream>::Run(http::request<http::string_body> request, std::string early) {
  if constexpr (kSendLane) {
    // HttpSession checked the request (CheckUpgrade): the 101 response goes first in the lane,
    // and the connection is open.
    absl::MutexLock lock(&mu_);
    EnqueueFrame(OutFrame{nullptr,
                          std::make_shared<const std::string>(
                              UpgradeResponse(request[http::field::sec_websocket_key])),
                          false, Opcode::kRaw});
    Opened();
    DoWrite();
    return;
  } else {
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = ToChrono(options_.handshake_timeout);
    timeouts.idle_timeout = websocket::stream_base::none();
    timeouts.keep_alive_pings = false;  // our own heartbeat follows --ping_interval/--pong_timeout
    ws_.set_option(timeouts);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "pushd"); }));
    ws_.read_message_max(kMaxClientMessageBytes);
    ws_.auto_fragment(false);
    ws_.control_callback(
        [this](websocket::frame_type kind, beast::string_view) { OnControlFrame(kind); });
    auto on_accept =
        beast::bind_front_handler(&WebSocketSession::OnAccept, this->shared_from_this());
    if (early.empty()) {
      ws_.async_accept(request, std::move(on_accept));
      return;
    }
    // Bytes the client sent behind its request (TLS: plain connections hand them to EdgeStream
    // instead). Beast takes them only together with the request's own bytes, so the request is
    // written out again; it copies both before returning and reads its first frames from them.
    std::ostringstream raw;
    raw << request;
    std::string bytes = std::move(raw).str();
    bytes += early;
    ws_.async_accept(net::buffer(bytes), std::move(on_accept));
  }
}

template <class Stream>
void WebSocketSession<Stream>::OnControlFrame(websocket::frame_type kind) {
  if (kind == websocket::frame_type::pong) awaiting_pong_ = false;
  // The client is leaving, maybe to reconnect at once: Beast answers this close after the call,
  // so the cursor moves of what was written reach the store first.
  if (kind == websocket::frame_type::close) store_->FlushCursor(params_.info.user_id);
}

template <class Stream>
void WebSocketSession<Stream>::OnAccept(beast::error_code ec) {
  if constexpr (!kSendLane) {
    absl::MutexLock lock(&mu_);
    if (ec) {
      spdlog::info("handshake failed user={} remote={}: {}", params_.info.user_id,
                   params_.info.remote_address, ec.message());
      ReleaseSlots();
      return;
    }
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = kCloseHandshakeTimeout;
    timeouts.idle_timeout = websocket::stream_base::none();
    timeouts.keep_alive_pings = false;
    ws_.set_option(timeouts);
    Opened();
  }
}

template <class Stream>
void WebSocketSession<Stream>::Opened() {
  counters_->open_sessions.fetch_add(1, std::memory_order_relaxed);
  GlobalMetrics().connections.fetch_add(1, std::memory_order_relaxed);
  GlobalMetrics().connects.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("connect user={} conn={} remote={} mode={}{}", params_.info.user_id,
               params_.info.connection_id, params_.info.remote_address,
               params_.compat ? "compat" : "ws", params_.ack ? " ack" : "");
  // Register before reading the store: every message is then either in the read or published
  // to us afterwards (the append precedes the publish), so nothing falls between the two.
  registered_ = true;
  hub_->Add(this->shared_from_this(), /*reserved=*/params_.user_slot);
  params_.user_slot = false;
  ReadStore();
  DoRead();
  absl::Time now = absl::Now();
  next_ping_ = now + FirstPingDelay(options_.ping_interval);
  ScheduleTimer(NextWake() - now);
  // A handshake that finished after a drain began (and after its close sweep) goes at once.
  if (options_.ready != nullptr && !options_.ready->load()) {
    StartClose(kCloseGoingAway, "server shutting down", Disconnect::kShutdown,
               /*flush=*/true);
  }
}

// ---- Client frames --------------------------------------------------------------------------

template <class Stream>
void WebSocketSession<Stream>::DoRead() {
  if constexpr (kSendLane) {
    if (reader_.done() || ended()) return;
    if (ws_.HasEarlyBytes()) {
      // What came with the upgrade request is there to read already.
      net::post(ws_.get_executor(),
                beast::bind_front_handler(&WebSocketSession::OnReadable, this->shared_from_this(),
                                          beast::error_code{}));
      return;
    }
    // The one operation an idle connection keeps pending: a small wait, no buffer.
    ws_.async_wait(net::socket_base::wait_read,
                   WithExactAllocator(beast::bind_front_handler(&WebSocketSession::OnReadable,
                                                                this->shared_from_this())));
  } else {
    ReadFrame();
  }
}

template <class Stream>
void WebSocketSession<Stream>::OnReadable(beast::error_code ec) {
  if constexpr (kSendLane) {
    absl::MutexLock lock(&mu_);
    if (ended() || reader_.done()) return;
    if (ec) return End(closing() ? close_why_ : Disconnect::kConnectionLost);
    // A buffer of the thread's: whatever a read brings is taken whole (FrameReader keeps only
    // the part of a frame or message still incomplete), so no connection holds one. Room for a
    // largest message with its header in one read.
    thread_local std::array<uint8_t, 2 * kMaxClientMessageBytes> buffer;
    // At most a few reads per turn, so a peer streaming frames shares the strand with the rest.
    for (int i = 0; i < 8; ++i) {
      ssize_t n = ws_.ReadSome(buffer.data(), buffer.size());
      if (n > 0) {
        reader_.Feed(buffer.data(), static_cast<size_t>(n),
                     [this](const FrameReader::Event& event)
                         ABSL_NO_THREAD_SAFETY_ANALYSIS { OnFrame(event); });
        if (reader_.done() || ended()) return;
        // A short read took all the socket held: wait rather than read again for EAGAIN (the
        // wait re-arms the socket in epoll, which reports bytes that came in between).
        if (static_cast<size_t>(n) < buffer.size()) return DoRead();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return DoRead();
      // The end of the stream without a close frame, or a socket error.
      return End(closing() ? close_why_ : Disconnect::kConnectionLost);
    }
    net::post(ws_.get_executor(),
              beast::bind_front_handler(&WebSocketSession::OnReadable, this->shared_from_this(),
                                        beast::error_code{}));
  }
}

template <class Stream>
void WebSocketSession<Stream>::OnFrame(const FrameReader::Event& event) {
  if constexpr (kSendLane) {
    using Kind = FrameReader::Event::Kind;
    switch (event.kind) {
      case Kind::kPong:
        awaiting_pong_ = false;
        return;
      case Kind::kPing:
        // Answered unless our close frame has gone (nothing may follow it).
        if (!close_queued_) SendControl(/*ping=*/false, std::string(event.payload));
        return;
      case Kind::kText:
        if (phase_ == Phase::kOpen) HandleClientFrame(event.payload);
        return;
      case Kind::kBinary:
        if (phase_ == Phase::kOpen) {
          StartClose(kCloseUnsupported, "binary frames are not accepted", Disconnect::kProtocol);
        }
        return;
      case Kind::kClose:
        CloseReceived(event.code, event.payload);
        return;
      case Kind::kFail:
        if (event.code == kCloseTooBig) RecordLimitHit(Limit::kFrameBytes);
        SendCloseThenEnd(event.code, event.what, Disconnect::kProtocol);  // no answer awaited
        return;
    }
  }
}

template <class Stream>
void WebSocketSession<Stream>::CloseReceived(uint16_t code, std::string_view reason) {
  if constexpr (kSendLane) {
    // The client is leaving, maybe to reconnect at once: the cursor moves of what was written
    // reach the store before it hears our answer.
    store_->FlushCursor(params_.info.user_id);
    // Answered with its own code and reason (RFC 6455 5.5.1), unless ours went first: then this
    // answer completes the handshake.
    SendCloseThenEnd(code, std::string(reason), Disconnect::kClientClosed);
  }
}

template <class Stream>
void WebSocketSession<Stream>::SendCloseThenEnd(uint16_t code, std::string reason, Disconnect why) {
  if constexpr (kSendLane) {
    end_on_close_written_ = true;
    if (close_queued_) {
      if (lane_closed_) EndAfterClose();  // ours is out already: nothing more to say
      return;
    }
    // What is queued and not started is dropped: it stays in the stream for the next connection.
    StartClose(code, std::move(reason), why);
    Dequeued(queue_.DropBack(0));
    DoWrite();  // the close frame goes once the lane is idle
  }
}

template <class Stream>
void WebSocketSession<Stream>::OnCloseWritten() {
  if constexpr (kSendLane) {
    // Otherwise the peer's answer ends it (CloseReceived), or the close timer.
    if (end_on_close_written_) EndAfterClose();
  }
}

template <class Stream>
void WebSocketSession<Stream>::EndAfterClose() {
  if constexpr (kSendLane) {
    beast::error_code ignored;
    ws_.shutdown(net::socket_base::shutdown_send, ignored);  // FIN after our close frame
    End(close_why_);
  }
}

template <class Stream>
void WebSocketSession<Stream>::ReadFrame() {
  if constexpr (!kSendLane) {
    // Read in small pieces: Beast sizes the buffer it prepares for a pending read by this limit.
    // Client frames are small acks.
    ws_.async_read_some(read_buffer_, kReadChunk,
                        WithExactAllocator(beast::bind_front_handler(&WebSocketSession::OnRead,
                                                                     this->shared_from_this())));
  }
}

template <class Stream>
void WebSocketSession<Stream>::OnRead(beast::error_code ec, std::size_t) {
  if constexpr (!kSendLane) {
    absl::MutexLock lock(&mu_);
    if (ec) {
      if (closing()) {
        End(close_why_);
      } else if (ec == websocket::error::closed) {
        End(Disconnect::kClientClosed);
      } else if (ec == websocket::error::message_too_big) {
        // Beast has already sent 1009 (read_message_max).
        RecordLimitHit(Limit::kFrameBytes);
        End(Disconnect::kProtocol);
      } else if (ec.category() == make_error_code(websocket::error::closed).category()) {
        // Beast has already sent the close frame (1009 too big, 1002 protocol, 1007 bad UTF-8).
        End(Disconnect::kProtocol);
      } else {
        End(Disconnect::kConnectionLost);
      }
      return;
    }
    if (!ws_.is_message_done()) return DoRead();
    if (phase_ == Phase::kOpen) {
      if (!ws_.got_text()) {
        StartClose(kCloseUnsupported, "binary frames are not accepted", Disconnect::kProtocol);
      } else {
        auto data = read_buffer_.cdata();
        HandleClientFrame(std::string_view(static_cast<const char*>(data.data()), data.size()));
      }
    }
    read_buffer_.consume(read_buffer_.size());
    if (read_buffer_.capacity() > 2 * kReadChunk) read_buffer_.shrink_to_fit();
    DoRead();  // keep reading: the close handshake completes through the read
  }
}

template <class Stream>
void WebSocketSession<Stream>::HandleClientFrame(std::string_view text) {
  ClientFrame frame;
  std::string error;
  if (!ParseClientFrame(text, &frame, &error)) {
    StartClose(kClosePolicy, error, Disconnect::kProtocol);
    return;
  }
  if (frame.type == ClientFrame::Type::kRefresh) {
    HandleRefresh(frame.token);
    return;
  }
  // An ack covers only what this connection has actually written.
  if (params_.ack && last_written_seq_ > 0) {
    store_->Advance(params_.info.user_id, params_.info.device_id,
                    std::min(frame.seq, last_written_seq_), store::Progress::kAcked);
  }
}

template <class Stream>
void WebSocketSession<Stream>::HandleRefresh(const std::string& token) {
  if (options_.jwt == nullptr) {
    StartClose(kClosePolicy, "refresh needs --auth=jwt", Disconnect::kProtocol);
    return;
  }
  absl::StatusOr<JwtClaims> claims = options_.jwt->Verify(token);
  if (!claims.ok()) {
    StartClose(kCloseTokenExpired, std::string(ToStd(claims.status().message())),
               Disconnect::kToken);
    return;
  }
  // A connection never changes hands: another user's token is refused like a bad one.
  if (claims->user_id != params_.info.user_id) {
    StartClose(kCloseTokenExpired, "refresh token is for another user", Disconnect::kToken);
    return;
  }
  params_.token_valid_until = claims->valid_until;
  ScheduleTimer(NextWake() - absl::Now());  // the new deadline may be earlier than the old
}

// ---- Replay and live delivery ---------------------------------------------------------------

// What the sequencer sends goes into the session's queue; on the stack for one call (a base
// class of the session would cost every connection a vtable pointer). Made only under the
// session's mu_, which its calls then require: the sequencer makes them through
// Sequencer::Output, where the analysis cannot follow.
template <class Stream>
class WebSocketSession<Stream>::Frames final : public Sequencer::Output {
 public:
  explicit Frames(WebSocketSession* session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(session->mu_)
      : s_(session) {}
  void Welcome(uint64_t last_seq) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    if (s_->params_.compat) return;  // bare data frames only
    std::string welcome = EncodeWelcome(s_->params_.info.connection_id, s_->params_.info.user_id,
                                        last_seq, s_->params_.info.device_id);
    s_->EnqueueFrame(OutFrame{nullptr, std::make_shared<const std::string>(std::move(welcome))});
  }
  void Gap(uint64_t from, uint64_t to) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    GlobalMetrics().gaps.fetch_add(1, std::memory_order_relaxed);
    if (s_->params_.compat) return;  // bare data frames cannot say it
    s_->EnqueueFrame(OutFrame{nullptr, std::make_shared<const std::string>(EncodeGap(from, to))});
  }
  void Send(MessagePtr message, bool live) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
    if (!live) GlobalMetrics().replays.fetch_add(1, std::memory_order_relaxed);
    s_->EnqueueFrame(OutFrame{std::move(message), nullptr, live});
  }

 private:
  WebSocketSession* const s_;
};

template <class Stream>
void WebSocketSession<Stream>::ReadStore() {
  store::ReadRequest request;
  request.user_id = params_.info.user_id;
  request.device_id = params_.info.device_id;
  request.after = sequencer_.StartRead(params_.since);
  request.max_messages = kReplayPageMessages;
  request.max_bytes = options_.send_queue_bytes / 2;
  store_->Read(std::move(request),
               [self = this->shared_from_this()](absl::StatusOr<store::ReadResult> result) mutable {
                 net::post(self->ws_.get_executor(), [self, result = std::move(result)]() mutable {
                   absl::MutexLock lock(&self->mu_);
                   self->OnStoreRead(std::move(result));
                 });
               });
}

template <class Stream>
void WebSocketSession<Stream>::OnStoreRead(absl::StatusOr<store::ReadResult> result) {
  if (phase_ != Phase::kOpen) return;
  if (!result.ok()) {
    spdlog::warn("store read failed user={} conn={}: {}", params_.info.user_id,
                 params_.info.connection_id, result.status().ToString());
    switch (sequencer_.OnReadFailed()) {
      case Sequencer::Failure::kClose:
        StartClose(kCloseInternalError, "message store unavailable", Disconnect::kError);
        return;
      case Sequencer::Failure::kReadAgain:
        ReadStore();
        return;
      case Sequencer::Failure::kStay:
        return;
    }
    return;
  }
  Frames frames(this);
  if (sequencer_.OnRead(std::move(*result), frames)) ReadStore();
  DoWrite();
}

template <class Stream>
void WebSocketSession<Stream>::Resync() {
  net::post(ws_.get_executor(), [self = this->shared_from_this()] {
    absl::MutexLock lock(&self->mu_);
    if (self->phase_ != Phase::kOpen) return;
    if (self->sequencer_.OnResync()) self->ReadStore();
  });
}

template <class Stream>
void WebSocketSession<Stream>::MaybeContinueReplay() {
  if (sequencer_.ReplayWaiting() && queued_bytes_ <= options_.send_queue_bytes / 2) {
    ReadStore();
  }
}

template <class Stream>
void WebSocketSession<Stream>::Deliver(MessagePtr message) {
  if constexpr (kSendLane) {
    // The common case on the publishing thread itself: the next message of a live connection
    // with room in its queue is queued and written at once. The rest (an old or early seq, a
    // replay in progress, a full queue, closing) goes through the strand.
    absl::MutexLock lock(&mu_);
    if (phase_ == Phase::kOpen && sequencer_.IsNext(message->seq) && HasRoom(*message)) {
      Frames frames(this);
      sequencer_.Take(std::move(message), /*live=*/true, frames);
      if (WriteBatch* batch = WriteBatch::Current()) {
        // This thread serves a burst (WriteBatch): the frame goes with the burst's other writes.
        if (!lane_deferred_) {
          lane_deferred_ = true;
          batch->DeferWrite([self = this->shared_from_this()] {
            absl::MutexLock lock(&self->mu_);
            self->lane_deferred_ = false;
            self->FlushLane(/*on_strand=*/false);
          });
        }
        return;
      }
      FlushLane(/*on_strand=*/false);
      return;
    }
  }
  net::post(ws_.get_executor(),
            [self = this->shared_from_this(), m = std::move(message)]() mutable {
              absl::MutexLock lock(&self->mu_);
              self->OnLive(std::move(m));
            });
}

template <class Stream>
bool WebSocketSession<Stream>::HasRoom(const Message& message) const {
  size_t size = params_.compat ? message.payload->size() : message.FrameSize();
  uint64_t queued = queued_bytes_.load(std::memory_order_relaxed);
  return queued == 0 || queued + size <= options_.send_queue_bytes;
}

template <class Stream>
void WebSocketSession<Stream>::OnLive(MessagePtr message) {
  if (phase_ != Phase::kOpen) return;
  switch (sequencer_.Classify(*message)) {
    case Sequencer::Live::kDrop:
      return;
    case Sequencer::Live::kRead:
      // Publishes of concurrent pushes can arrive out of order: fetch the hole from the stream.
      ReadStore();
      return;
    case Sequencer::Live::kNext:
      break;
  }
  if (!HasRoom(*message)) {
    StartClose(kCloseSlowConsumer, "slow consumer", Disconnect::kSlowConsumer);
    return;
  }
  Frames frames(this);
  sequencer_.Take(std::move(message), /*live=*/true, frames);
  DoWrite();
}

template <class Stream>
void WebSocketSession<Stream>::EnqueueFrame(OutFrame frame, bool ahead) {
  int64_t bytes = static_cast<int64_t>(frame.Size(params_.compat));
  if (ahead) {
    bytes = queue_.PushFront(std::move(frame));  // a pong may replace a waiting one
  } else {
    queue_.Push(std::move(frame));
  }
  // Modular arithmetic: a replaced longer pong shrinks the count.
  queued_bytes_.fetch_add(static_cast<uint64_t>(bytes), std::memory_order_relaxed);
  int64_t total =
      GlobalMetrics().send_queue_bytes.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  if (counters_->budget != nullptr) counters_->budget->Check(static_cast<uint64_t>(total));
}

template <class Stream>
void WebSocketSession<Stream>::DoWrite() {
  if constexpr (kSendLane) {
    FlushLane(/*on_strand=*/true);
    if (!lane_busy_ && queue_.empty()) {
      OnLaneIdle();
    } else if (phase_ == Phase::kOpen) {
      MaybeContinueReplay();  // from half full, as on TLS, so store reads overlap the writes
    }
  } else {
    if (writing_ || queue_.empty() || ended()) return;
    writing_ = true;
    ws_.text(true);
    std::array<iovec, 3> pieces = queue_.Payload(queue_.front());
    std::array<net::const_buffer, 3> buffers;
    for (size_t i = 0; i < pieces.size(); ++i) {
      buffers[i] = net::const_buffer(pieces[i].iov_base, pieces[i].iov_len);
    }
    ws_.async_write(
        buffers, beast::bind_front_handler(&WebSocketSession::OnWrite, this->shared_from_this()));
  }
}

template <class Stream>
void WebSocketSession<Stream>::OnWrite(beast::error_code ec, std::size_t) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  uint64_t before = queue_.bytes();
  SentFrames sent;
  queue_.PopFront([&](const OutFrame& frame) {
    if (!ec) sent.Add(frame);
  });
  Dequeued(before - queue_.bytes());
  FramesSent(sent);
  if (ec) return WriteFailed();
  if (closing()) {
    DoWrite();  // flushing before a going-away close
    MaybeSendClose();
    return;
  }
  MaybeContinueReplay();
  DoWrite();
}

template <class Stream>
void WebSocketSession<Stream>::WriteFailed() {
  Abort(closing() ? close_why_ : Disconnect::kConnectionLost);
}

template <class Stream>
void WebSocketSession<Stream>::Dequeued(uint64_t bytes) {
  if (bytes == 0) return;
  queued_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
  GlobalMetrics().send_queue_bytes.fetch_sub(static_cast<int64_t>(bytes),
                                             std::memory_order_relaxed);
}

template <class Stream>
void WebSocketSession<Stream>::SentFrames::Add(const OutFrame& frame) {
  if (!frame.message) return;
  ++messages;
  last_seq = frame.message->seq;
  if (frame.live) {
    if (now_ns == 0) now_ns = Metrics::NowNanos();
    GlobalMetrics().delivery_latency.Observe(now_ns - frame.message->appended_ns);
  }
}

template <class Stream>
void WebSocketSession<Stream>::FramesSent(const SentFrames& sent) {
  if (sent.messages == 0) return;
  last_written_seq_ = sent.last_seq;
  messages_sent_.fetch_add(sent.messages, std::memory_order_relaxed);
  GlobalMetrics().deliveries.fetch_add(sent.messages, std::memory_order_relaxed);
  // One cursor move for all that one write took (on an ack=1 connection, the written mark only:
  // the cursor waits for the ack).
  store_->Advance(params_.info.user_id, params_.info.device_id, sent.last_seq,
                  params_.ack ? store::Progress::kWrittenAwaitingAck : store::Progress::kWritten);
}

template <class Stream>
void WebSocketSession<Stream>::FlushLane(bool on_strand) {
  if constexpr (kSendLane) {
    if (lane_busy_ || lane_closed_ || ended()) return;
    const int fd = beast::get_lowest_layer(ws_).native_handle();
    uint64_t bytes = 0;
    SentFrames sent;
    std::array<iovec, SendQueue::kMaxIovecs> iov;
    while (!queue_.empty()) {
      msghdr msg{};
      msg.msg_iov = iov.data();
      msg.msg_iovlen = queue_.Gather(iov.data(), iov.size());
      ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        // The socket is full (the strand waits for it to drain) or the connection is gone.
        lane_busy_ = true;
        bool lost = errno != EAGAIN && errno != EWOULDBLOCK;
        if (on_strand) {
          OnLaneBlocked(lost);
        } else {
          net::post(ws_.get_executor(), [self = this->shared_from_this(), lost] {
            absl::MutexLock lock(&self->mu_);
            self->OnLaneBlocked(lost);
          });
        }
        break;
      }
      uint64_t before = queue_.bytes();
      queue_.Consume(static_cast<size_t>(n), [&](const OutFrame& frame) { sent.Add(frame); });
      bytes += before - queue_.bytes();
    }
    Dequeued(bytes);
    FramesSent(sent);
  }
}

template <class Stream>
void WebSocketSession<Stream>::OnLaneBlocked(bool lost) {
  if constexpr (kSendLane) {
    if (ended()) return;
    if (lost) return WriteFailed();
    beast::get_lowest_layer(ws_).async_wait(
        net::socket_base::wait_write,
        beast::bind_front_handler(&WebSocketSession::OnWritable, this->shared_from_this()));
  }
}

template <class Stream>
void WebSocketSession<Stream>::OnWritable(beast::error_code ec) {
  absl::MutexLock lock(&mu_);
  if (ended()) return;
  if (ec) return OnLaneBlocked(/*lost=*/true);  // the lane stays busy: the connection is gone
  lane_busy_ = false;
  DoWrite();
}

template <class Stream>
void WebSocketSession<Stream>::OnLaneIdle() {
  if (ended()) return;
  if (close_queued_) {
    if (!lane_closed_) {
      lane_closed_ = true;
      OnCloseWritten();
    }
    return;
  }
  if (closing()) {
    MaybeSendClose();
  } else {
    MaybeContinueReplay();
  }
}

// ---- Heartbeat and closing ------------------------------------------------------------------

template <class Stream>
void WebSocketSession<Stream>::ScheduleTimer(absl::Duration after) {
  int64_t due = wheel_->DueTick(ToChrono(after));
  // One entry at a time: a later deadline waits for the pending earlier one, whose OnTimer
  // schedules what is left, so a client repeating refresh frames cannot pile up entries.
  if (wake_tick_ != 0 && due >= wake_tick_) return;
  wake_tick_ = due;
  wheel_->ScheduleAt(std::weak_ptr<TimerWheel::Client>(this->shared_from_this()), due);
}

template <class Stream>
void WebSocketSession<Stream>::OnWheelTimer(int64_t due) {
  if constexpr (kSendLane) {
    // Most turns need no strand: a pong came in time, or a ping goes out on the send lane as a
    // publishing thread's frame does. No post then, and no wake-up of another edge thread.
    // (Not on TLS: Beast's control callback sets awaiting_pong_ on the strand without mu_.)
    absl::MutexLock lock(&mu_);
    if (OnTimer(due, /*on_strand=*/false)) return;
  }
  net::post(ws_.get_executor(), [self = this->shared_from_this(), due] {
    absl::MutexLock lock(&self->mu_);
    self->OnTimer(due, /*on_strand=*/true);
  });
}

template <class Stream>
bool WebSocketSession<Stream>::OnTimer(int64_t due, bool on_strand) {
  // An older deadline that ScheduleTimer has since replaced is stale; once closing, the close
  // timer rules.
  if (due != wake_tick_ || phase_ != Phase::kOpen) return true;
  absl::Time now = absl::Now();
  const bool pong_late = awaiting_pong_ && now - ping_sent_ >= options_.pong_timeout;
  const bool expired = now >= params_.token_valid_until;
  const bool ping = now >= next_ping_;
  if (!on_strand) {
    // Off the strand (the send lane only, see OnWheelTimer): a ping goes out as Deliver's frames
    // do unless a replay waits to continue once it is written; closing always goes to the strand.
    if (pong_late || expired || (ping && sequencer_.ReplayWaiting())) return false;
  }
  wake_tick_ = 0;  // no entry pending now
  if (pong_late) {
    Abort(Disconnect::kPongTimeout);
    return true;
  }
  if (expired) {
    StartClose(kCloseTokenExpired, "token expired", Disconnect::kToken);
    return true;
  }
  if (ping) {
    if (!control_in_flight_) {
      SendControl(/*ping=*/true, {}, on_strand);
    } else {
      ping_wanted_ = true;  // sent when the control write in flight completes
    }
    if (!awaiting_pong_) {
      awaiting_pong_ = true;
      ping_sent_ = now;
    }
    next_ping_ = now + options_.ping_interval;
  }
  ScheduleTimer(NextWake() - now);
  return true;
}

template <class Stream>
void WebSocketSession<Stream>::SendControl(bool ping, std::string payload, bool on_strand) {
  if constexpr (kSendLane) {
    // In the lane, ahead of the messages not yet started (the peer's answer must not wait
    // behind a backlog); the lane never interleaves with itself, so no wait of their own.
    EnqueueFrame(OutFrame{nullptr, std::make_shared<const std::string>(std::move(payload)), false,
                          ping ? Opcode::kPing : Opcode::kPong},
                 /*ahead=*/true);
    if (on_strand) {
      DoWrite();
    } else {
      FlushLane(/*on_strand=*/false);  // as a publishing thread writes (see Deliver)
    }
  } else {
    control_in_flight_ = true;
    auto done = [self = this->shared_from_this()](beast::error_code ec) {
      absl::MutexLock lock(&self->mu_);
      self->control_in_flight_ = false;
      if (!ec && self->ping_wanted_ && self->phase_ == Phase::kOpen) {
        self->ping_wanted_ = false;
        self->SendControl(/*ping=*/true, {});
      }
    };
    websocket::ping_data data(payload.data(), payload.size());
    if (ping) {
      ws_.async_ping(data, std::move(done));
    } else {
      ws_.async_pong(data, std::move(done));
    }
  }
}

template <class Stream>
absl::Time WebSocketSession<Stream>::NextWake() const {
  absl::Time wake = std::min(next_ping_, params_.token_valid_until);
  if (awaiting_pong_) wake = std::min(wake, ping_sent_ + options_.pong_timeout);
  return wake;
}

template <class Stream>
void WebSocketSession<Stream>::Close(uint16_t code, std::string reason) {
  net::post(ws_.get_executor(),
            [self = this->shared_from_this(), code, reason = std::move(reason)]() {
              absl::MutexLock lock(&self->mu_);
              Disconnect why = code == kCloseGoingAway      ? Disconnect::kShutdown
                               : code == kCloseSlowConsumer ? Disconnect::kSlowConsumer
                                                            : Disconnect::kDeleted;
              // Going away (drain): what is queued is still written, since this process will not be
              // there to replay it. Otherwise unsent frames are dropped and replayed on reconnect.
              self->StartClose(code, reason, why, /*flush=*/code == kCloseGoingAway);
            });
}

template <class Stream>
void WebSocketSession<Stream>::StartClose(uint16_t code, std::string reason, Disconnect why,
                                          bool flush) {
  if (phase_ != Phase::kOpen) return;
  phase_ = Phase::kClosing;
  close_why_ = why;
  GlobalMetrics().CountDisconnect(why);
  if (why != Disconnect::kClientClosed) {
    spdlog::info("closing user={} conn={} code={} reason='{}'", params_.info.user_id,
                 params_.info.connection_id, code, reason);
  }
  if (registered_) {
    registered_ = false;
    hub_->Remove(*this, DisconnectText(why));
  }
  // Unless flushing, unsent frames are dropped (they stay in the stream for the next connect); a
  // frame being written stays alive until its write completes.
  // (On the lane, a frame partly written is finished: SendQueue keeps it.)
  Dequeued(queue_.DropBack(flush ? queue_.size() : writing_ ? 1 : 0));
  pending_close_ =
      std::make_unique<websocket::close_reason>(static_cast<websocket::close_code>(code), reason);
  net::steady_timer& timer = CloseTimer();
  timer.expires_after(ToChrono(kCloseTimeout));
  timer.async_wait([self = this->shared_from_this()](beast::error_code ec) {
    absl::MutexLock lock(&self->mu_);
    if (ec == net::error::operation_aborted || self->ended()) return;
    self->Abort(self->close_why_);  // the close handshake did not finish in time
  });
  if constexpr (kSendLane) {
    DoWrite();  // sends the close frame too once the lane is idle
  } else {
    MaybeSendClose();
  }
}

template <class Stream>
net::steady_timer& WebSocketSession<Stream>::CloseTimer() {
  if (!close_timer_) close_timer_ = std::make_unique<net::steady_timer>(ws_.get_executor());
  return *close_timer_;
}

template <class Stream>
void WebSocketSession<Stream>::MaybeSendClose() {
  // The close frame follows the last queued frame.
  if (phase_ != Phase::kClosing || !queue_.empty()) return;
  if constexpr (kSendLane) {
    if (lane_busy_) return;
    phase_ = Phase::kCloseSent;
    // The lane's last frame. Once written (OnLaneIdle), the peer's close completes the handshake
    // (CloseReceived), or the close timer gives up on it.
    close_queued_ = true;
    auto payload = std::make_shared<std::string>();
    if (pending_close_->code != websocket::close_code::none) {
      const auto code = static_cast<uint16_t>(pending_close_->code);
      payload->push_back(static_cast<char>(code >> 8));
      payload->push_back(static_cast<char>(code & 0xff));
      payload->append(pending_close_->reason.data(), pending_close_->reason.size());
    }
    EnqueueFrame(OutFrame{nullptr, std::move(payload), false, Opcode::kClose});
    DoWrite();
  } else {
    phase_ = Phase::kCloseSent;
    // The handshake ends here or in the read that sees the peer's close frame, whichever is
    // first.
    ws_.async_close(*pending_close_, [self = this->shared_from_this()](beast::error_code ec) {
      absl::MutexLock lock(&self->mu_);
      if (!ec) self->End(self->close_why_);
    });
  }
}

template <class Stream>
void WebSocketSession<Stream>::Abort(Disconnect why) {
  CloseTcpSocket(ws_);
  End(why);
}

template <class Stream>
void WebSocketSession<Stream>::End(Disconnect why) {
  if (ended()) return;
  if (!closing()) GlobalMetrics().CountDisconnect(why);  // else StartClose counted it
  phase_ = Phase::kEnded;
  if (registered_) {
    registered_ = false;
    hub_->Remove(*this, DisconnectText(why));
  }
  // Linger briefly before closing the socket so the peer can read our close frame (closing with
  // unread input would send a RST that may destroy it). The timer keeps the session alive.
  net::steady_timer& timer = CloseTimer();
  timer.expires_after(kLinger);
  timer.async_wait([self = this->shared_from_this()](beast::error_code) {
    absl::MutexLock lock(&self->mu_);
    CloseTcpSocket(self->ws_);
  });
  ReleaseSlots();
  // --device_ttl counts from the end of the device's last connection.
  if (!params_.info.device_id.empty()) {
    store_->TouchDevice(params_.info.user_id, params_.info.device_id);
  }
  store_->FlushCursor(params_.info.user_id);
  counters_->open_sessions.fetch_sub(1, std::memory_order_relaxed);
  GlobalMetrics().connections.fetch_sub(1, std::memory_order_relaxed);
  spdlog::info("disconnect user={} conn={} reason={} sent={}", params_.info.user_id,
               params_.info.connection_id, DisconnectText(why), messages_sent_.load());
}

template <class Stream>
void WebSocketSession<Stream>::ReleaseSlots() {
  if (params_.user_slot) {
    params_.user_slot = false;
    hub_->Release(params_.info.user_id);
  }
  if (holds_slot_) {
    holds_slot_ = false;
    counters_->slots.fetch_sub(1, std::memory_order_relaxed);
  }
}

}  // namespace push::edge
