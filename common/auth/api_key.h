#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace push {

// The shared key that gRPC calls and admin HTTP calls must present as
// `authorization: Bearer <key>` when --api_key_file is set. Reloadable (SIGHUP) for rotation.
class ApiKey {
 public:
  explicit ApiKey(std::string path) : path_(std::move(path)) {}

  // (Re)reads the file: the key is its content without surrounding whitespace, at least 16
  // bytes. On error the previous key stays in force.
  absl::Status Load();

  // True when `authorization` is "Bearer <key>" (compared in constant time).
  bool Check(std::string_view authorization) const;

  const std::string& path() const { return path_; }

 private:
  const std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::string> key_ ABSL_GUARDED_BY(mu_);
};

}  // namespace push
