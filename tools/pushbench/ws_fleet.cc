#include "tools/pushbench/ws_fleet.h"

#include <netinet/in.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <charconv>
#include <optional>
#include <string_view>
#include <thread>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace pushbench {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

constexpr std::string_view kMessagePrefix = R"({"type":"message",)";
constexpr std::string_view kWelcomePrefix = R"({"type":"welcome",)";
constexpr std::string_view kGapPrefix = R"({"type":"gap",)";

// The unsigned number right after `key` in `text`, searching from `from`; false if absent.
bool NumberAfter(std::string_view text, std::string_view key, size_t from, uint64_t* out,
                 size_t* end = nullptr) {
  size_t pos = text.find(key, from);
  if (pos == std::string_view::npos) return false;
  const char* first = text.data() + pos + key.size();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, *out);
  if (ec != std::errc() || ptr == first) return false;
  if (end) *end = static_cast<size_t>(ptr - text.data());
  return true;
}

struct Worker;

struct Conn {
  Conn(net::io_context& io, Worker* w, uint32_t i, uint32_t u)
      : ws(io.get_executor()), worker(w), index(i), user(u) {}

  websocket::stream<beast::tcp_stream> ws;
  beast::flat_buffer buffer;
  Worker* worker;
  uint32_t index;
  uint32_t user;
  bool welcomed = false;
  bool finished = false;  // failed or dropped; no more reads
  uint64_t max_seq = 0;
  uint64_t frames = 0;
  uint64_t unique = 0;
  uint64_t duplicated = 0;
  uint64_t reordered = 0;
  std::vector<uint64_t> seen;  // bit per seq
};

struct Worker {
  net::io_context io{1};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> guard;
  std::thread thread;
  std::vector<std::unique_ptr<Conn>> conns;
  size_t next_to_start = 0;
  int connecting = 0;
  int max_connecting = 1;
  // Owned by the worker thread; read after it is joined.
  Histogram latency;
  std::vector<SlowMessage> slow;
  uint64_t gaps = 0;
  uint64_t bad_frames = 0;
  std::string first_error;
  // Read live by the main thread.
  std::atomic<uint64_t> welcomed{0}, failed{0}, dropped{0}, unique{0}, pings{0};

  // Single writer: a relaxed load+store is enough and avoids a locked instruction per message.
  static void Bump(std::atomic<uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

}  // namespace

struct WsFleet::Impl {
  static constexpr size_t kMaxSlow = 100000;
  FleetOptions options;
  int64_t slow_ns = 0;
  std::vector<std::unique_ptr<Worker>> workers;
  tcp::endpoint server;
  std::string host_header;
  const std::vector<std::string>* user_names = nullptr;
  std::atomic<bool> stopping{false};
  bool stopped = false;

  void StartMore(Worker& w) {
    while (!stopping && w.connecting < w.max_connecting && w.next_to_start < w.conns.size()) {
      ++w.connecting;
      BeginConnect(*w.conns[w.next_to_start++]);
    }
  }

  void Fail(Conn& c, const char* step, beast::error_code ec) {
    Worker& w = *c.worker;
    if (c.finished || stopping) return;
    c.finished = true;
    std::string what = std::string(step) + ": " + ec.message();
    if (c.welcomed) {
      Worker::Bump(w.dropped);
      if (ec == websocket::error::closed) {
        what = "closed by the server with code " + std::to_string(c.ws.reason().code) + " '" +
               std::string(c.ws.reason().reason.data(), c.ws.reason().reason.size()) + "'";
      }
    } else {
      Worker::Bump(w.failed);
      --w.connecting;
    }
    if (w.first_error.empty()) {
      w.first_error =
          "connection " + std::to_string(c.index) + " (" + (*user_names)[c.user] + "): " + what;
    }
    if (!c.welcomed) StartMore(w);
  }

  void BeginConnect(Conn& c) {
    auto& stream = beast::get_lowest_layer(c.ws);
    auto& socket = stream.socket();
    beast::error_code ec;
    socket.open(tcp::v4(), ec);
    if (!ec) {
      // Let connect() pick the port per destination, so each source address has its full range.
      int one = 1;
      setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
      auto source = net::ip::make_address_v4(0x7f000001u + c.index % options.source_ips);
      socket.bind(tcp::endpoint(source, 0), ec);
    }
    if (ec) return Fail(c, "socket", ec);
    stream.expires_after(std::chrono::seconds(20));
    stream.async_connect(server, [this, &c](beast::error_code ec) {
      if (ec) return Fail(c, "connect", ec);
      beast::get_lowest_layer(c.ws).expires_never();
      c.ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
      c.ws.read_message_max(8u << 20);
      c.ws.control_callback([&c](websocket::frame_type kind, beast::string_view) {
        if (kind == websocket::frame_type::ping) Worker::Bump(c.worker->pings);
      });
      std::string target = "/ws?user_id=" + (*user_names)[c.user];
      if (options.device_ids) target += "&device_id=d" + std::to_string(c.index);
      c.ws.async_handshake(host_header, target, [this, &c](beast::error_code ec) {
        if (ec) return Fail(c, "handshake", ec);
        DoRead(c);
      });
    });
  }

  void DoRead(Conn& c) {
    c.ws.async_read(c.buffer, [this, &c](beast::error_code ec, size_t) {
      if (ec) return Fail(c, c.welcomed ? "read" : "reading the welcome frame", ec);
      auto data = c.buffer.cdata();
      OnFrame(c, std::string_view(static_cast<const char*>(data.data()), data.size()));
      c.buffer.consume(c.buffer.size());
      if (!c.finished && !(options.stop_reading && c.welcomed)) DoRead(c);
    });
  }

  void OnFrame(Conn& c, std::string_view text) {
    Worker& w = *c.worker;
    if (text.starts_with(kMessagePrefix)) {
      int64_t now = NowNanos();
      uint64_t seq = 0, stamp = 0;
      size_t data_at = text.find(R"("data":)");
      if (!NumberAfter(text, R"("seq":)", 0, &seq) || seq == 0 || data_at == std::string::npos ||
          !NumberAfter(text, R"("t":)", data_at, &stamp)) {
        return BadFrame(c, text);
      }
      ++c.frames;
      int64_t latency = std::max<int64_t>(now - static_cast<int64_t>(stamp), 0);
      w.latency.Record(static_cast<uint64_t>(latency));
      if (slow_ns > 0 && latency > slow_ns && w.slow.size() < kMaxSlow) {
        w.slow.push_back({now, latency, c.index});
      }
      size_t word = seq / 64;
      if (word >= c.seen.size()) c.seen.resize(std::max(word + 1, c.seen.size() * 2));
      uint64_t bit = uint64_t{1} << (seq % 64);
      if (c.seen[word] & bit) {
        ++c.duplicated;
        return;
      }
      c.seen[word] |= bit;
      if (seq < c.max_seq) ++c.reordered;
      c.max_seq = std::max(c.max_seq, seq);
      ++c.unique;
      Worker::Bump(w.unique);
    } else if (text.starts_with(kWelcomePrefix)) {
      if (c.welcomed) return BadFrame(c, text);
      c.welcomed = true;
      --w.connecting;
      Worker::Bump(w.welcomed);
      StartMore(w);
    } else if (text.starts_with(kGapPrefix)) {
      ++w.gaps;
      if (w.first_error.empty()) {
        w.first_error = "connection " + std::to_string(c.index) + " got " + std::string(text);
      }
    } else {
      BadFrame(c, text);
    }
  }

  void BadFrame(Conn& c, std::string_view text) {
    ++c.worker->bad_frames;
    if (c.worker->first_error.empty()) {
      c.worker->first_error = "connection " + std::to_string(c.index) +
                              " got an unexpected frame: " + std::string(text.substr(0, 200));
    }
  }
};

WsFleet::WsFleet(FleetOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->options.io_threads = std::max(1, impl_->options.io_threads);
  impl_->options.source_ips = std::clamp(impl_->options.source_ips, 1, 254);
  impl_->slow_ns = impl_->options.slow_ns;
  impl_->server = tcp::endpoint(net::ip::make_address(impl_->options.host), impl_->options.port);
  impl_->host_header = impl_->options.host + ":" + std::to_string(impl_->options.port);
  int per_thread = std::max(1, impl_->options.connect_concurrency / impl_->options.io_threads);
  for (int i = 0; i < impl_->options.io_threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->max_connecting = per_thread;
    w->guard.emplace(w->io.get_executor());
    Worker* raw = w.get();
    w->thread = std::thread([raw] { raw->io.run(); });
    impl_->workers.push_back(std::move(w));
  }
}

WsFleet::~WsFleet() { Stop(); }

double WsFleet::Connect(const std::vector<std::string>& user_names,
                        const std::vector<uint32_t>& conn_user, Clock::time_point deadline) {
  impl_->user_names = &user_names;
  auto start = Clock::now();
  size_t n_workers = impl_->workers.size();
  // Each worker owns its slice; its handlers run only on its one thread, so no locking.
  std::vector<std::vector<std::unique_ptr<Conn>>> slices(n_workers);
  for (uint32_t i = 0; i < conn_user.size(); ++i) {
    Worker* w = impl_->workers[i % n_workers].get();
    slices[i % n_workers].push_back(std::make_unique<Conn>(w->io, w, i, conn_user[i]));
  }
  for (size_t k = 0; k < n_workers; ++k) {
    Worker* w = impl_->workers[k].get();
    net::post(w->io, [this, w, slice = std::move(slices[k])]() mutable {
      w->conns = std::move(slice);
      impl_->StartMore(*w);
    });
  }
  uint64_t total = conn_user.size();
  while (Welcomed() + Failed() < total && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return SecondsBetween(start, Clock::now());
}

uint64_t WsFleet::Unique() const {
  uint64_t sum = 0;
  for (auto& w : impl_->workers) sum += w->unique.load(std::memory_order_relaxed);
  return sum;
}
uint64_t WsFleet::Dropped() const {
  uint64_t sum = 0;
  for (auto& w : impl_->workers) sum += w->dropped.load(std::memory_order_relaxed);
  return sum;
}
uint64_t WsFleet::Welcomed() const {
  uint64_t sum = 0;
  for (auto& w : impl_->workers) sum += w->welcomed.load(std::memory_order_relaxed);
  return sum;
}
uint64_t WsFleet::Failed() const {
  uint64_t sum = 0;
  for (auto& w : impl_->workers) sum += w->failed.load(std::memory_order_relaxed);
  return sum;
}

void WsFleet::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->stopping = true;
  for (auto& w : impl_->workers) {
    Worker* raw = w.get();
    net::post(w->io, [raw] {
      for (auto& c : raw->conns) {
        beast::error_code ignored;
        beast::get_lowest_layer(c->ws).socket().close(ignored);
      }
      raw->guard.reset();
    });
  }
  for (auto& w : impl_->workers) w->thread.join();
}

FleetTotals WsFleet::Collect(const std::function<uint64_t(uint32_t)>& expected) {
  Stop();
  FleetTotals t;
  for (auto& w : impl_->workers) {
    t.latency_ns.Merge(w->latency);
    t.slow.insert(t.slow.end(), w->slow.begin(), w->slow.end());
    t.gaps += w->gaps;
    t.bad_frames += w->bad_frames;
    t.pings += w->pings.load();
    t.dropped += w->dropped.load();
    t.failed += w->failed.load();
    t.welcomed += w->welcomed.load();
    if (t.first_error.empty()) t.first_error = w->first_error;
    for (auto& c : w->conns) {
      ++t.connections;
      uint64_t want = expected(c->user);
      t.expected += want;
      t.frames += c->frames;
      t.unique += c->unique;
      t.duplicated += c->duplicated;
      t.reordered += c->reordered;
      // Seqs 1..want must all be there; anything above was pushed without a confirmed answer.
      uint64_t have = 0;
      for (uint64_t seq = 1; seq <= want; ++seq) {
        size_t word = seq / 64;
        if (word < c->seen.size() && (c->seen[word] >> (seq % 64) & 1)) ++have;
      }
      t.lost += want - have;
      t.extra += c->unique - have;
    }
  }
  // Connections never started (a deadline hit first) count as failed too.
  t.failed = t.connections - t.welcomed;
  return t;
}

}  // namespace pushbench
