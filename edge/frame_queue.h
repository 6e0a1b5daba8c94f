#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace push {

// A FIFO on a vector that allocates nothing while empty: memory matters per connection, and
// std::deque allocates ~600 bytes up front. A grown buffer is given back once the queue drains.
// push_back may move elements, so what an in-flight write points to must live outside T.
template <typename T>
class FrameQueue {
 public:
  bool empty() const { return head_ == items_.size(); }
  size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  T& back() { return items_.back(); }
  // The i-th queued item (0 = front).
  const T& at(size_t i) const { return items_[head_ + i]; }
  T& at_mutable(size_t i) { return items_[head_ + i]; }
  void push_back(T item) { items_.push_back(std::move(item)); }
  // Inserts before the i-th queued item (0 = front); O(size), for rare control frames.
  void insert(size_t i, T item) {
    items_.insert(items_.begin() + static_cast<std::ptrdiff_t>(head_ + i), std::move(item));
  }
  void pop_front() {
    items_[head_] = T();
    if (++head_ == items_.size()) {
      Reset();
    } else if (head_ >= kKeepCapacity && 2 * head_ >= items_.size()) {
      // A queue that never quite drains must not keep every popped slot: drop the prefix.
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void pop_back() {
    items_.pop_back();
    if (head_ == items_.size()) Reset();
  }

 private:
  static constexpr size_t kKeepCapacity = 8;
  void Reset() {
    head_ = 0;
    if (items_.capacity() > kKeepCapacity) {
      std::vector<T>().swap(items_);
    } else {
      items_.clear();
    }
  }

  std::vector<T> items_;
  size_t head_ = 0;
};

}  // namespace push
