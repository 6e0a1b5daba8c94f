#include "tools/pushbench/churn.h"

#include <arpa/inet.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include "push/v1/push.grpc.pb.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace pushbench {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace v1 = push::v1;
using tcp = net::ip::tcp;

constexpr std::string_view kWelcomePrefix = R"({"type":"welcome",)";

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct Thread;

// One cycle at a time: connect, handshake, welcome, close; then the next cycle.
struct Slot {
  Slot(Thread* t, net::io_context& io) : thread(t), timer(io) {}
  Thread* thread;
  net::steady_timer timer;
  std::optional<websocket::stream<beast::tcp_stream>> ws;
  beast::flat_buffer buffer;
  uint64_t index = 0;
  Clock::time_point begin;
  bool waiting = false;  // on its slot's timer
};

struct Thread {
  net::io_context io{1};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> guard;
  std::thread thread;
  std::vector<std::unique_ptr<Slot>> slots;
  // Owned by the thread; read after it is joined.
  Histogram welcome, cycle;
  std::string first_error;
  // Read live.
  std::atomic<uint64_t> started{0}, done{0}, failed{0}, late{0};

  static void Bump(std::atomic<uint64_t>& c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

}  // namespace

struct ChurnClients::Impl {
  ChurnOptions options;
  tcp::endpoint server;
  std::string host_header;
  std::vector<std::unique_ptr<Thread>> threads;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> stopping{false};
  std::atomic<int> active{0};
  Clock::time_point t0;
  bool stopped = false;

  std::string UserOf(uint64_t i) const {
    uint64_t u = SplitMix64(options.seed + i) % static_cast<uint64_t>(options.users);
    return options.user_prefix + std::to_string(u);
  }

  void Finish(Slot& s) {
    s.ws.reset();
    active.fetch_sub(1);
  }

  // Takes the next cycle's number and starts it at its slot.
  void Next(Slot& s) {
    if (stopping.load()) return Finish(s);
    uint64_t i = next.fetch_add(1);
    s.index = i;
    if (options.rate > 0) {
      auto at = t0 + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(static_cast<double>(i) / options.rate));
      auto now = Clock::now();
      if (now < at) {
        s.waiting = true;
        s.timer.expires_at(at);
        s.timer.async_wait([this, &s](beast::error_code) {
          s.waiting = false;
          if (stopping.load()) return Finish(s);
          Begin(s);
        });
        return;
      }
      if (now - at > std::chrono::milliseconds(1)) Thread::Bump(s.thread->late);
    }
    Begin(s);
  }

  void Fail(Slot& s, const char* step, beast::error_code ec) {
    Thread& t = *s.thread;
    Thread::Bump(t.failed);
    if (t.first_error.empty()) {
      t.first_error = "cycle " + std::to_string(s.index) + " (" + UserOf(s.index) + "): " + step +
                      ": " + ec.message();
    }
    if (s.ws) {
      beast::error_code ignored;
      beast::get_lowest_layer(*s.ws).socket().close(ignored);
    }
    // Let the failed stream's handlers (none are pending: each step waits for the last) go.
    net::post(t.io, [this, &s] { Next(s); });
  }

  void Begin(Slot& s) {
    Thread& t = *s.thread;
    Thread::Bump(t.started);
    s.begin = Clock::now();
    s.buffer.consume(s.buffer.size());
    s.ws.emplace(t.io.get_executor());
    auto& stream = beast::get_lowest_layer(*s.ws);
    auto& socket = stream.socket();
    beast::error_code ec;
    socket.open(tcp::v4(), ec);
    if (!ec) {
      int one = 1;
      setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
      auto source = net::ip::make_address_v4(
          0x7f000001u + static_cast<uint32_t>(s.index % static_cast<uint64_t>(options.source_ips)));
      socket.bind(tcp::endpoint(source, 0), ec);
    }
    if (ec) return Fail(s, "socket", ec);
    stream.expires_after(std::chrono::seconds(10));
    stream.async_connect(server, [this, &s](beast::error_code ec) {
      if (ec) return Fail(s, "connect", ec);
      beast::get_lowest_layer(*s.ws).expires_never();
      websocket::stream_base::timeout timeouts{};
      timeouts.handshake_timeout = std::chrono::seconds(10);  // the close handshake's too
      timeouts.idle_timeout = websocket::stream_base::none();
      timeouts.keep_alive_pings = false;
      s.ws->set_option(timeouts);
      std::string target = "/ws?user_id=" + UserOf(s.index);
      s.ws->async_handshake(host_header, target, [this, &s](beast::error_code ec) {
        if (ec) return Fail(s, "handshake", ec);
        s.ws->async_read(s.buffer, [this, &s](beast::error_code ec, size_t) {
          if (ec) return Fail(s, "reading the welcome frame", ec);
          auto data = s.buffer.cdata();
          std::string_view text(static_cast<const char*>(data.data()), data.size());
          if (!text.starts_with(kWelcomePrefix)) {
            return Fail(s, "welcome", beast::error_code(EPROTO, beast::generic_category()));
          }
          auto welcomed = Clock::now();
          s.thread->welcome.Record(static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(welcomed - s.begin).count()));
          s.ws->async_close(websocket::close_code::normal, [this, &s](beast::error_code ec) {
            if (ec) return Fail(s, "close", ec);
            Thread& t = *s.thread;
            t.cycle.Record(static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - s.begin)
                    .count()));
            Thread::Bump(t.done);
            s.ws.reset();
            Next(s);
          });
        });
      });
    });
  }
};

ChurnClients::ChurnClients(ChurnOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  ChurnOptions& o = impl_->options;
  o.io_threads = std::max(1, o.io_threads);
  o.workers = std::max(1, o.workers);
  o.users = std::max(1, o.users);
  o.source_ips = std::clamp(o.source_ips, 1, 254);
  impl_->server = tcp::endpoint(net::ip::make_address(o.host), static_cast<uint16_t>(o.port));
  impl_->host_header = o.host + ":" + std::to_string(o.port);
  for (int i = 0; i < o.io_threads; ++i) {
    auto t = std::make_unique<Thread>();
    t->guard.emplace(t->io.get_executor());
    impl_->threads.push_back(std::move(t));
  }
  for (int i = 0; i < o.workers; ++i) {
    Thread* t = impl_->threads[static_cast<size_t>(i) % impl_->threads.size()].get();
    t->slots.push_back(std::make_unique<Slot>(t, t->io));
  }
  for (auto& t : impl_->threads) {
    Thread* raw = t.get();
    t->thread = std::thread([raw] { raw->io.run(); });
  }
}

ChurnClients::~ChurnClients() { Stop(5); }

void ChurnClients::Start() {
  impl_->t0 = Clock::now();
  impl_->active.store(impl_->options.workers);
  for (auto& t : impl_->threads) {
    Thread* raw = t.get();
    net::post(raw->io, [this, raw] {
      for (auto& s : raw->slots) impl_->Next(*s);
    });
  }
}

ChurnCounts ChurnClients::Counts() const {
  ChurnCounts c;
  for (auto& t : impl_->threads) {
    c.started += t->started.load(std::memory_order_relaxed);
    c.done += t->done.load(std::memory_order_relaxed);
    c.failed += t->failed.load(std::memory_order_relaxed);
    c.late += t->late.load(std::memory_order_relaxed);
  }
  return c;
}

bool ChurnClients::Stop(double timeout_s) {
  if (impl_->stopped) return true;
  impl_->stopped = true;
  impl_->stopping = true;
  // Slots waiting for their time end now; cycles under way finish.
  for (auto& t : impl_->threads) {
    Thread* raw = t.get();
    net::post(raw->io, [raw] {
      for (auto& s : raw->slots) {
        if (s->waiting) s->timer.cancel();
      }
    });
  }
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(timeout_s));
  while (impl_->active.load() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const bool all = impl_->active.load() <= 0;
  for (auto& t : impl_->threads) {
    Thread* raw = t.get();
    net::post(raw->io, [raw] {
      for (auto& s : raw->slots) {
        if (s->ws) {
          beast::error_code ignored;
          beast::get_lowest_layer(*s->ws).socket().close(ignored);
        }
      }
      raw->guard.reset();
    });
  }
  for (auto& t : impl_->threads) t->thread.join();
  return all;
}

Histogram ChurnClients::WelcomeLatency() const {
  Histogram h;
  for (auto& t : impl_->threads) h.Merge(t->welcome);
  return h;
}

Histogram ChurnClients::CycleLatency() const {
  Histogram h;
  for (auto& t : impl_->threads) h.Merge(t->cycle);
  return h;
}

std::string ChurnClients::FirstError() const {
  for (auto& t : impl_->threads) {
    if (!t->first_error.empty()) return t->first_error;
  }
  return "";
}

// ---- Watchers ----------------------------------------------------------------------------------

class PresenceWatchers::Watcher final : public grpc::ClientReadReactor<v1::PresenceEvent> {
 public:
  Watcher(const std::string& target, int index) {
    grpc::ChannelArguments args;
    // A channel (and TCP connection) of its own, as a separate backend's would be.
    args.SetInt("pushbench.watcher", index);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    stub_ = v1::PushService::NewStub(channel_);
    stub_->async()->WatchPresence(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  void OnReadInitialMetadataDone(bool ok) override {
    if (!ok) return;
    const auto& md = ctx_.GetServerInitialMetadata();
    auto it = md.find("presence-cursor");
    std::lock_guard<std::mutex> lock(mu_);
    if (it != md.end()) {
      uint64_t cursor = 0;
      std::from_chars(it->second.data(), it->second.data() + it->second.size(), cursor);
      if (counts_.events == 0) {
        counts_.first_cursor = counts_.last_cursor = cursor;
      } else if (cursor != counts_.first_cursor) {
        // An event came first and guessed the start: what lies between was missed.
        counts_.gaps += counts_.first_cursor > cursor ? counts_.first_cursor - cursor : 0;
        counts_.first_cursor = cursor;
      }
    }
    counts_.live = true;
    cv_.notify_all();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    {
      std::lock_guard<std::mutex> lock(mu_);
      WatcherCounts& c = counts_;
      const uint64_t cursor = event_.cursor();
      if (c.events == 0 && !c.live) c.first_cursor = c.last_cursor = cursor - 1;
      ++c.events;
      switch (event_.kind()) {
        case v1::PresenceEvent::CONNECTED:
          ++c.connected;
          break;
        case v1::PresenceEvent::DISCONNECTED:
          ++c.disconnected;
          break;
        case v1::PresenceEvent::ONLINE:
          ++c.online;
          break;
        case v1::PresenceEvent::OFFLINE:
          ++c.offline;
          break;
        case v1::PresenceEvent::RESYNC:
          ++c.resync;
          break;
        default:
          ++c.other;
          break;
      }
      if (event_.kind() == v1::PresenceEvent::RESYNC) {
        c.last_cursor = cursor;  // events go on after it
      } else if (cursor <= c.last_cursor) {
        ++c.out_of_order;
      } else {
        c.gaps += cursor - c.last_cursor - 1;
        c.last_cursor = cursor;
      }
    }
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    counts_.ended = true;
    counts_.end_status =
        "gRPC status " + std::to_string(status.error_code()) + ": " + status.error_message();
    cv_.notify_all();
  }

  WatcherCounts Counts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_;
  }

  bool WaitLive(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, deadline, [this] { return counts_.live || counts_.ended; });
    return counts_.live && !counts_.ended;
  }

  // Cancels the call; true once gRPC is done with it (the object may go).
  bool Cancel(Clock::time_point deadline) {
    ctx_.TryCancel();
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline, [this] { return counts_.ended; });
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PushService::Stub> stub_;
  grpc::ClientContext ctx_;
  v1::WatchPresenceRequest request_;  // every user, from now on
  v1::PresenceEvent event_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  WatcherCounts counts_;
};

PresenceWatchers::PresenceWatchers(const std::string& grpc_target, int count) {
  for (int i = 0; i < count; ++i) watchers_.push_back(std::make_unique<Watcher>(grpc_target, i));
}

PresenceWatchers::~PresenceWatchers() { Stop(); }

bool PresenceWatchers::WaitLive(double timeout_s, std::string* error) {
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(timeout_s));
  for (size_t i = 0; i < watchers_.size(); ++i) {
    if (!watchers_[i]->WaitLive(deadline)) {
      WatcherCounts c = watchers_[i]->Counts();
      *error = "presence watcher " + std::to_string(i) + " did not start" +
               (c.ended ? " (" + c.end_status + ")" : " within the time limit");
      return false;
    }
  }
  return true;
}

std::vector<WatcherCounts> PresenceWatchers::Counts() const {
  std::vector<WatcherCounts> out;
  for (const auto& w : watchers_) out.push_back(w->Counts());
  return out;
}

void PresenceWatchers::Stop() {
  auto deadline = Clock::now() + std::chrono::seconds(10);
  for (auto& w : watchers_) {
    // A call gRPC has not let go of is leaked rather than freed under it.
    if (!w->Cancel(deadline)) (void)w.release();
  }
  watchers_.clear();
}

// ---- /metrics ----------------------------------------------------------------------------------

std::vector<uint64_t> ScrapeMetrics(const std::string& host, int port,
                                    const std::vector<std::string>& series) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  std::string body;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    std::string request = "GET /metrics HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
                          "\r\nConnection: close\r\n\r\n";
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      // Until the server closes, or the Content-Length is in.
      char buf[65536];
      size_t want = SIZE_MAX;
      for (ssize_t n; body.size() < std::min<size_t>(want, 8u << 20) &&
                      (n = recv(fd, buf, sizeof(buf), 0)) > 0;) {
        body.append(buf, static_cast<size_t>(n));
        size_t head = body.find("\r\n\r\n");
        if (want == SIZE_MAX && head != std::string::npos) {
          size_t at = body.find("\r\nContent-Length: ");
          if (at == std::string::npos) at = body.find("\r\ncontent-length: ");
          if (at != std::string::npos && at < head) {
            size_t length = 0;
            const char* first = body.data() + at + 18;
            std::from_chars(first, body.data() + head, length);
            want = head + 4 + length;
          }
        }
      }
    }
  }
  close(fd);
  if (body.find("\r\n\r\n") == std::string::npos) return {};
  std::vector<uint64_t> values;
  for (const std::string& s : series) {
    size_t pos = body.find("\n" + s + " ");
    uint64_t v = UINT64_MAX;
    if (pos != std::string::npos) {
      const char* first = body.data() + pos + s.size() + 2;
      std::from_chars(first, body.data() + body.size(), v);
    }
    values.push_back(v);
  }
  return values;
}

}  // namespace pushbench
