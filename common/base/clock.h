#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace push {

// Injectable time source so retention and ttl logic can be tested without sleeping.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  static Clock* Real();
};

}  // namespace push
