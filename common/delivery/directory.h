#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/delivery/hub.h"

namespace push {

struct ClientRecord {
  ClientSnapshot client;
  std::string node_id;
};

// Where connections are, for ListClients and DeleteClient: this process's hub alone, or every
// node's through Redis. Callbacks run inline or on a Redis thread.
class Directory {
 public:
  virtual ~Directory() = default;
  // Every live connection (or the user's), sorted by (user_id, connection_id).
  virtual void List(std::optional<std::string> user_id,
                    absl::AnyInvocable<void(absl::StatusOr<std::vector<ClientRecord>>)> done) = 0;
  // Closes the user's connections (or only `connection_id`) wherever they are; the number closed.
  virtual void Close(std::string user_id, std::string connection_id, uint16_t code,
                     std::string reason,
                     absl::AnyInvocable<void(absl::StatusOr<uint32_t>)> done) = 0;
};

// The embedded default: the connections of this process.
class LocalDirectory final : public Directory {
 public:
  LocalDirectory(Hub* hub, std::string node_id) : hub_(hub), node_id_(std::move(node_id)) {}
  void List(std::optional<std::string> user_id,
            absl::AnyInvocable<void(absl::StatusOr<std::vector<ClientRecord>>)> done) override {
    std::vector<ClientSnapshot> all =
        hub_->Snapshot(user_id ? std::optional<std::string_view>(*user_id) : std::nullopt);
    std::vector<ClientRecord> out;
    out.reserve(all.size());
    for (auto& c : all) out.push_back(ClientRecord{std::move(c), node_id_});
    done(std::move(out));
  }
  void Close(std::string user_id, std::string connection_id, uint16_t code, std::string reason,
             absl::AnyInvocable<void(absl::StatusOr<uint32_t>)> done) override {
    done(hub_->Close(user_id, connection_id, code, reason));
  }

 private:
  Hub* const hub_;
  const std::string node_id_;
};

}  // namespace push
