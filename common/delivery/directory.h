#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
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

// One page of ListClients, in (user_id, connection_id) order.
struct ListRequest {
  std::optional<std::string> user_id;  // only this user's connections
  // Start after this (user, connection): the last of the previous page.
  std::optional<std::pair<std::string, std::string>> after;
  uint32_t limit = 100;
};
struct ClientPage {
  std::vector<ClientRecord> clients;
  uint64_t total = 0;  // connections matching the filter, all nodes
  bool more = false;   // connections follow this page
  // Where the next page starts after, when not the last client listed (entries of connections
  // that closed meanwhile were dropped from the end of the page).
  std::optional<std::pair<std::string, std::string>> resume_after;
};

// Where connections are, for ListClients and DeleteClient: this process's hub alone, or every
// node's through Redis. Callbacks run inline or on a Redis thread.
class Directory {
 public:
  virtual ~Directory() = default;
  virtual void List(ListRequest request,
                    absl::AnyInvocable<void(absl::StatusOr<ClientPage>)> done) = 0;
  // Closes the user's connections (or only `connection_id`) wherever they are; the number closed.
  virtual void Close(std::string user_id, std::string connection_id, uint16_t code,
                     std::string reason,
                     absl::AnyInvocable<void(absl::StatusOr<uint32_t>)> done) = 0;
};

// The embedded default: the connections of this process.
class LocalDirectory final : public Directory {
 public:
  LocalDirectory(Hub* hub, std::string node_id) : hub_(hub), node_id_(std::move(node_id)) {}
  void List(ListRequest request,
            absl::AnyInvocable<void(absl::StatusOr<ClientPage>)> done) override {
    std::vector<ClientSnapshot> all = hub_->Snapshot(
        request.user_id ? std::optional<std::string_view>(*request.user_id) : std::nullopt);
    ClientPage page;
    page.total = all.size();
    auto begin = all.begin();
    if (request.after) {
      begin = std::upper_bound(
          all.begin(), all.end(), *request.after, [](const auto& key, const ClientSnapshot& c) {
            return std::tie(key.first, key.second) < std::tie(c.info.user_id, c.info.connection_id);
          });
    }
    for (auto it = begin; it != all.end(); ++it) {
      if (page.clients.size() == request.limit) {
        page.more = true;
        break;
      }
      page.clients.push_back(ClientRecord{std::move(*it), node_id_});
    }
    done(std::move(page));
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
