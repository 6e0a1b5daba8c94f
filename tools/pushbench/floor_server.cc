// floor_server: the least a C++ server behind pushd's contract can do per unary Push, as a floor
// to measure pushd and the reference server against in one sitting (BENCHMARKS.md, issue 13).
//   floor_server --grpc_listen=127.0.0.1:G --ws_listen=127.0.0.1:W
//   pushbench --grpc=127.0.0.1:G --ws=127.0.0.1:W --server_pid=PID --scenario=throughput
//
// What it does, and nothing more:
//   - /ws?user_id=U: the WebSocket handshake, the contract's welcome frame, then nothing but
//     reading (and dropping) what the client sends; a connection that ends is forgotten.
//   - Push on gRPC's completion-queue API, one queue thread (pushd's default on 2 cores): the
//     user's next seq, one text frame {"type":"message","seq":N,"data":DATA} written with one
//     send() by that thread, then the answer. No store, no replay, no heartbeat, no limits, no
//     metrics, no logging; Push only (no other method is served).
//   - With --batch (the default), the writes of a burst go out as pushd's do (common/base/
//     write_batch.h, the same code): the queue thread serves the events that are ready, then sends
//     each connection's frames with one send(), then the answers, with gRPC's own writes corked
//     (services/cork_sendmsg.cc is linked in). --nobatch writes each frame and answer at once.
// A full socket is waited out (poll) rather than queued: pushbench's readers keep up.
// Not a server for anything but this measurement.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "common/base/write_batch.h"
#include "push/v1/push.grpc.pb.h"

ABSL_FLAG(std::string, grpc_listen, "127.0.0.1:50061", "gRPC address");
ABSL_FLAG(std::string, ws_listen, "127.0.0.1:8090", "WebSocket address (host:port)");
ABSL_FLAG(bool, batch, true, "send a burst's frames and answers together, as pushd does");
ABSL_FLAG(int, spin_us, 0,
          "burn this many microseconds of CPU per Push on the queue thread: to see how the tail of "
          "the latency scenario moves with the CPU a push costs (BENCHMARKS.md, issue 13)");
ABSL_FLAG(std::string, ports_file, "",
          "when set, the ports bound (\"GRPC WS\", for :0 addresses) are written there");

namespace {

struct User {
  int fd = -1;
  uint64_t seq = 0;
};

std::mutex users_mu;
std::unordered_map<std::string, User> users;  // guarded by users_mu
std::atomic<bool> stopping{false};
volatile std::sig_atomic_t stop_signal = 0;
std::mutex queue_mu;
bool queue_shut = false;  // guarded by queue_mu

// Writes all of `bytes`, waiting on a full socket. False when the connection is gone.
bool SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 1000);
    } else {
      return false;
    }
  }
  return true;
}

// An unmasked text frame (server to client), header and payload in one buffer.
void AppendTextFrame(std::string_view payload, std::string* out) {
  out->push_back(static_cast<char>(0x81));
  size_t n = payload.size();
  if (n < 126) {
    out->push_back(static_cast<char>(n));
  } else if (n < 65536) {
    out->push_back(static_cast<char>(126));
    out->push_back(static_cast<char>(n >> 8));
    out->push_back(static_cast<char>(n & 0xff));
  } else {
    out->push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(n >> shift));
  }
  out->append(payload);
}

std::string AcceptKey(std::string_view key) {
  std::string in(key);
  in += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(in.data(), in.size(), digest, &len, EVP_sha1(), nullptr);
  unsigned char b64[64];
  int n = EVP_EncodeBlock(b64, digest, static_cast<int>(len));
  return std::string(reinterpret_cast<char*>(b64), static_cast<size_t>(n));
}

std::string_view HeaderValue(std::string_view request, std::string_view name) {
  size_t at = 0;
  while ((at = request.find("\r\n", at)) != std::string_view::npos) {
    at += 2;
    if (request.size() - at > name.size() &&
        strncasecmp(request.data() + at, name.data(), name.size()) == 0 &&
        request[at + name.size()] == ':') {
      size_t begin = request.find_first_not_of(' ', at + name.size() + 1);
      size_t end = request.find("\r\n", begin);
      return request.substr(begin, end - begin);
    }
  }
  return {};
}

// Reads the HTTP request (blocking), answers 101 and the welcome; returns the user or "".
std::string Handshake(int fd) {
  std::string request;
  char buf[2048];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return "";
    request.append(buf, static_cast<size_t>(n));
  }
  size_t q = request.find("user_id=");
  size_t line_end = request.find("\r\n");
  if (q == std::string::npos || q > line_end) return "";
  size_t end = request.find_first_of(" &", q);
  std::string user = request.substr(q + 8, end - q - 8);
  std::string_view key = HeaderValue(request, "Sec-WebSocket-Key");
  if (user.empty() || key.empty()) return "";
  std::string out =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      AcceptKey(key) + "\r\n\r\n";
  AppendTextFrame(
      R"({"type":"welcome","connection_id":")" + user + R"(","user_id":")" + user + R"(","seq":0})",
      &out);
  return SendAll(fd, out) ? user : "";
}

int Listen(const std::string& host_port) {
  size_t colon = host_port.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  if (inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 4096) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One thread: accepts (handshakes inline), then reads and drops what clients send; forgets a
// connection that ends.
void WebSocketLoop(int listener) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  std::unordered_map<int, std::string> user_of;
  std::vector<epoll_event> events(256);
  char sink[4096];
  while (!stopping.load()) {
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 200);
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == listener) {
        int c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::string user = Handshake(c);
        if (user.empty()) {
          close(c);
          continue;
        }
        {
          std::lock_guard<std::mutex> lock(users_mu);
          users[user].fd = c;
        }
        user_of[c] = user;
        epoll_event cev{};
        cev.events = EPOLLIN;
        cev.data.fd = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        continue;
      }
      ssize_t got = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
      if (got > 0 || (got < 0 && errno == EAGAIN)) continue;
      epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
      {
        std::lock_guard<std::mutex> lock(users_mu);
        auto it = users.find(user_of[fd]);
        if (it != users.end() && it->second.fd == fd) it->second.fd = -1;
      }
      user_of.erase(fd);
      close(fd);
    }
  }
  close(ep);
}

int spin_us = 0;  // --spin_us, read once at start

// Frames waiting for the end of the burst, per socket (queue thread only).
std::unordered_map<int, std::string> pending_frames;

// One Push call on the completion queue: requested, served, answered, deleted.
class PushCall {
 public:
  PushCall(push::v1::PushService::AsyncService* service, grpc::ServerCompletionQueue* cq)
      : service_(service), cq_(cq), responder_(&ctx_) {
    service_->RequestPush(&ctx_, &request_, &responder_, cq_, cq_, this);
  }

  void Proceed(bool ok) {
    if (answered_ || !ok) {
      delete this;
      return;
    }
    {
      // No new request once the queue is shut down (gRPC aborts on one).
      std::lock_guard<std::mutex> lock(queue_mu);
      if (!queue_shut) new PushCall(service_, cq_);
    }
    if (spin_us > 0) {
      // Busy, not asleep: the cost of a heavier server, on the thread that carries the push.
      auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
      while (std::chrono::steady_clock::now() < until) {
      }
    }
    push::v1::PushResponse response;
    int fd = -1;
    uint64_t seq = 0;
    {
      std::lock_guard<std::mutex> lock(users_mu);
      auto it = users.find(request_.user_id());
      if (it != users.end() && it->second.fd >= 0) {
        fd = it->second.fd;
        seq = ++it->second.seq;
      }
    }
    push::WriteBatch* batch = push::WriteBatch::Current();
    if (fd >= 0) {
      std::string payload = R"({"type":"message","seq":)" + std::to_string(seq) + R"(,"data":)";
      payload += request_.data();
      payload += '}';
      if (batch != nullptr) {
        // Queued for the connection; one send() of all its frames when the burst ends.
        std::string& pending = pending_frames[fd];
        if (pending.empty()) {
          batch->DeferWrite([fd] {
            std::string& frames = pending_frames[fd];
            SendAll(fd, frames);
            frames.clear();
          });
        }
        AppendTextFrame(payload, &pending);
        response.set_seq(seq);
        response.set_delivered(1);
      } else {
        std::string frame;
        AppendTextFrame(payload, &frame);
        if (SendAll(fd, frame)) {
          response.set_seq(seq);
          response.set_delivered(1);
        }
      }
    }
    answered_ = true;
    if (batch != nullptr) {
      batch->DeferAnswer([this, response = std::move(response)] {
        responder_.Finish(response, grpc::Status::OK, this);
      });
    } else {
      responder_.Finish(response, grpc::Status::OK, this);
    }
  }

 private:
  push::v1::PushService::AsyncService* service_;
  grpc::ServerCompletionQueue* cq_;
  grpc::ServerContext ctx_;
  push::v1::PushRequest request_;
  grpc::ServerAsyncResponseWriter<push::v1::PushResponse> responder_;
  bool answered_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  spin_us = absl::GetFlag(FLAGS_spin_us);
  // As pushd does (services/main.cc): Debian's Abseil is built without NDEBUG, so every
  // absl::Mutex (gRPC's included) would run deadlock detection.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  signal(SIGPIPE, SIG_IGN);
  // SIGTERM and SIGINT set a flag (gRPC may have started threads of its own already, so a
  // signal mask would not cover every thread); a watcher thread shuts down when it is set.
  signal(SIGTERM, [](int) { stop_signal = 1; });
  signal(SIGINT, [](int) { stop_signal = 1; });
  int listener = Listen(absl::GetFlag(FLAGS_ws_listen));
  if (listener < 0) {
    std::fprintf(stderr, "floor_server: cannot listen on %s\n",
                 absl::GetFlag(FLAGS_ws_listen).c_str());
    return 1;
  }
  push::v1::PushService::AsyncService service;
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_grpc_listen), grpc::InsecureServerCredentials(),
                           &grpc_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::ServerCompletionQueue> cq = builder.AddCompletionQueue();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) {
    std::fprintf(stderr, "floor_server: cannot listen on %s\n",
                 absl::GetFlag(FLAGS_grpc_listen).c_str());
    return 1;
  }
  if (std::string path = absl::GetFlag(FLAGS_ports_file); !path.empty()) {
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
    std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) return 1;
    std::fprintf(f, "%d %d\n", grpc_port, ntohs(bound.sin_port));
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());  // whole or absent for whoever waits for it
  }
  std::thread ws(WebSocketLoop, listener);
  // The queue thread is this one; the waiter ends it.
  std::thread waiter([&] {
    while (stop_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stopping.store(true);
    server->Shutdown(std::chrono::system_clock::now());
    std::lock_guard<std::mutex> lock(queue_mu);
    queue_shut = true;
    cq->Shutdown();
  });
  new PushCall(&service, cq.get());
  void* tag = nullptr;
  bool ok = false;
  if (!absl::GetFlag(FLAGS_batch)) {
    while (cq->Next(&tag, &ok)) static_cast<PushCall*>(tag)->Proceed(ok);
  } else {
    // pushd's loop (services/async_call.cc, QueueThreads::Serve): the ready events are one
    // burst, flushed when none is ready, after 64 events, or when nothing waits.
    constexpr int kBurstEvents = 64;
    push::WriteBatch::Scope scope;
    push::WriteBatch& batch = scope.batch();
    int burst = 0;
    for (;;) {
      grpc::CompletionQueue::NextStatus status;
      if (burst == 0) {
        status = cq->Next(&tag, &ok) ? grpc::CompletionQueue::GOT_EVENT
                                     : grpc::CompletionQueue::SHUTDOWN;
      } else {
        status = cq->AsyncNext(&tag, &ok, gpr_inf_past(GPR_CLOCK_MONOTONIC));
      }
      if (status == grpc::CompletionQueue::SHUTDOWN) break;
      if (status == grpc::CompletionQueue::GOT_EVENT) {
        push::WriteBatch::Cork cork;
        static_cast<PushCall*>(tag)->Proceed(ok);
      }
      if (status == grpc::CompletionQueue::TIMEOUT || ++burst >= kBurstEvents || batch.empty()) {
        batch.Flush();
        burst = 0;
      }
    }
  }
  waiter.join();
  ws.join();
  close(listener);
  return 0;
}
