#pragma once

// A real WatchPresence client for tests: a gRPC server stream read on its own thread into a queue,
// so tests wait for events with a deadline. Ends (cancels the call and joins) on destruction.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "push/v1/push.grpc.pb.h"

namespace push::testing {

class PresenceWatcher {
 public:
  // Watches through a fresh channel to 127.0.0.1:`grpc_port`. `window_bytes` > 0 shrinks the
  // client's HTTP/2 receive window (a client that reads slowly fills it sooner). With
  // `start_reading` false the stream is opened but nothing is read until StartReading.
  PresenceWatcher(int grpc_port, std::vector<std::string> users = {}, uint64_t after = 0,
                  int window_bytes = 0, bool start_reading = true) {
    grpc::ChannelArguments args;
    if (window_bytes > 0) {
      args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, window_bytes);
      args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    }
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(grpc_port),
                                         grpc::InsecureChannelCredentials(), args);
    stub_ = v1::PushService::NewStub(channel_);
    v1::WatchPresenceRequest request;
    for (auto& u : users) request.add_user_ids(u);
    request.set_after(after);
    // Bounded: no test watches longer, and a server that never answers cannot hang the test.
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(180));
    reader_ = stub_->WatchPresence(&context_, request);
    // The server sends its metadata once the watch is live (events from now on reach it).
    reader_->WaitForInitialMetadata();
    auto& md = context_.GetServerInitialMetadata();
    if (auto it = md.find("presence-cursor"); it != md.end()) {
      start_cursor_ = std::stoull(std::string(it->second.data(), it->second.size()));
    }
    if (start_reading) StartReading();
  }

  ~PresenceWatcher() {
    context_.TryCancel();
    if (thread_.joinable()) thread_.join();
  }

  void StartReading() {
    if (thread_.joinable()) return;
    thread_ = std::thread([this] {
      v1::PresenceEvent e;
      while (reader_->Read(&e)) {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back(e);
        cv_.notify_all();
      }
      grpc::Status status = reader_->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      status_ = status;
      cv_.notify_all();
    });
  }

  // The next event, or nullopt when none came within `timeout` (or the stream ended).
  std::optional<v1::PresenceEvent> Next(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !events_.empty() || status_.has_value(); });
    if (events_.empty()) return std::nullopt;
    v1::PresenceEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
  }

  // The next event of `kind` (events before it are returned in `skipped` when given).
  std::optional<v1::PresenceEvent> NextOf(
      v1::PresenceEvent::Kind kind,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000),
      std::vector<v1::PresenceEvent>* skipped = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto e = Next(left);
      if (!e) return std::nullopt;
      if (e->kind() == kind) return e;
      if (skipped) skipped->push_back(*e);
    }
  }

  // The stream's status once it ended (nullopt while it runs, after waiting up to `timeout`).
  std::optional<grpc::Status> Ended(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return status_.has_value(); });
    return status_;
  }

  // The cursor the watch started after (the server's presence-cursor metadata).
  uint64_t start_cursor() const { return start_cursor_; }

  // Events received and not taken yet.
  size_t buffered() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PushService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::PresenceEvent>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::PresenceEvent> events_;
  std::optional<grpc::Status> status_;
  uint64_t start_cursor_ = 0;
};

}  // namespace push::testing
