#include "common/base/write_batch.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <utility>

namespace push {

namespace {
thread_local WriteBatch* current_batch = nullptr;
thread_local bool corking = false;
}  // namespace

WriteBatch* WriteBatch::Current() { return current_batch; }

bool WriteBatch::Corking() { return corking; }

void WriteBatch::Corked(int fd) {
  if (current_batch == nullptr) return;
  std::vector<int>& corked = current_batch->corked_;
  if (std::find(corked.begin(), corked.end(), fd) == corked.end()) corked.push_back(fd);
}

void WriteBatch::Flush() {
  // Each round runs what waited when it began (swapped out, so that what the runs defer lands
  // in the emptied list for the next round): the writes first, the answers once none wait.
  while (!writes_.empty() || !answers_.empty()) {
    bool answers = writes_.empty();
    running_.swap(answers ? answers_ : writes_);
    // One answer alone gains nothing from a cork and would pay its uncork.
    bool cork = answers && (running_.size() > 1 || !corked_.empty());
    corking = cork;
    for (auto& run : running_) std::move(run)();
    corking = false;
    running_.clear();
  }
  Uncork();
}

void WriteBatch::Uncork() {
  // Setting TCP_NODELAY (which gRPC's and the edge's sockets have anyway) sends what MSG_MORE
  // held back. A socket closed meanwhile answers an error, which changes nothing.
  for (int fd : corked_) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  corked_.clear();
}

WriteBatch::Cork::Cork() { corking = current_batch != nullptr; }

WriteBatch::Cork::~Cork() { corking = false; }

WriteBatch::Scope::Scope() : batch_(new WriteBatch) { current_batch = batch_; }

WriteBatch::Scope::~Scope() {
  batch_->Flush();
  current_batch = nullptr;
  delete batch_;
}

}  // namespace push
