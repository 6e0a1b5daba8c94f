#include "common/delivery/memory_store.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "common/base/ids.h"
#include "common/base/metrics.h"
#include "common/base/strings.h"

namespace push::store {

struct MemoryStore::Stream {
  std::string user_id;
  uint64_t last_seq = 0;
  uint64_t cursor = 0;
  std::deque<MessagePtr> messages;  // increasing seq
  StringMap<uint64_t> ids;          // idempotency keys of retained messages
  absl::Time last_active;
  // A lower bound of the messages' expiry times, so Sweep only scans streams that may hold
  // expired messages.
  absl::Time earliest_expiry = absl::InfiniteFuture();
  // Intrusive LRU links within the shard: list 0 holds streams with messages, list 1 empty ones
  // (whose seq and cursor are kept until memory runs short).
  Stream* lru_prev = nullptr;
  Stream* lru_next = nullptr;
  int lru_list = -1;

  size_t MetadataFootprint() const { return sizeof(Stream) + user_id.capacity() + 64; }
};

void MemoryStore::Shard::Unlink(Stream& s) {
  if (s.lru_list < 0) return;
  int l = s.lru_list;
  (s.lru_prev ? s.lru_prev->lru_next : lru_head[l]) = s.lru_next;
  (s.lru_next ? s.lru_next->lru_prev : lru_tail[l]) = s.lru_prev;
  s.lru_prev = s.lru_next = nullptr;
  s.lru_list = -1;
}

void MemoryStore::Shard::Relink(Stream& s) {
  Unlink(s);
  int l = s.messages.empty() ? 1 : 0;
  s.lru_prev = lru_tail[l];
  s.lru_next = nullptr;
  (lru_tail[l] ? lru_tail[l]->lru_next : lru_head[l]) = &s;
  lru_tail[l] = &s;
  s.lru_list = l;
}

MemoryStore::MemoryStore(MemoryStoreOptions options, Clock* clock)
    : options_(options), clock_(clock) {
  shards_.reserve(options_.shards);
  for (int i = 0; i < options_.shards; ++i) shards_.push_back(std::make_unique<Shard>());
}

MemoryStore::~MemoryStore() {
  GlobalMetrics().store_bytes.fetch_sub(static_cast<int64_t>(bytes_.load()));
}

MemoryStore::Shard& MemoryStore::ShardFor(std::string_view user_id) {
  return *shards_[StringViewHash{}(user_id) % shards_.size()];
}

void MemoryStore::Touch(Shard& shard, Stream& s) {
  s.last_active = clock_->Now();
  shard.Relink(s);
}

void MemoryStore::AddBytes(int64_t delta) {
  bytes_.fetch_add(static_cast<uint64_t>(delta), std::memory_order_relaxed);
  GlobalMetrics().store_bytes.fetch_add(delta, std::memory_order_relaxed);
}

void MemoryStore::Forget(Stream& s, const Message& m) {
  // The key may already name a newer message with the same id (this one had expired).
  if (auto it = s.ids.find(m.id); it != s.ids.end() && it->second == m.seq) s.ids.erase(it);
  AddBytes(-static_cast<int64_t>(m.Footprint()));
}

void MemoryStore::PopFront(Shard& shard, Stream& s) {
  Forget(s, *s.messages.front());
  s.messages.pop_front();
  if (s.messages.empty()) shard.Relink(s);  // now on the list of empty streams
}

void MemoryStore::Append(AppendRequest request,
                         absl::AnyInvocable<void(absl::StatusOr<AppendResult>)> done) {
  Shard& shard = ShardFor(request.user_id);
  AppendResult result;
  {
    absl::MutexLock lock(&shard.mu);
    auto& slot = shard.streams[request.user_id];
    if (!slot) {
      slot = std::make_unique<Stream>();
      slot->user_id = request.user_id;
      AddBytes(static_cast<int64_t>(slot->MetadataFootprint()));
    }
    Stream& s = *slot;
    absl::Time now = clock_->Now();
    // Expired messages at the front go first so they neither count nor dedupe.
    while (!s.messages.empty() && s.messages.front()->expires_at <= now) {
      PopFront(shard, s);
      GlobalMetrics().store_expirations.fetch_add(1, std::memory_order_relaxed);
    }
    if (!request.message_id.empty()) {
      if (auto it = s.ids.find(request.message_id); it != s.ids.end()) {
        uint64_t seq = it->second;
        auto m = std::lower_bound(s.messages.begin(), s.messages.end(), seq,
                                  [](const MessagePtr& p, uint64_t v) { return p->seq < v; });
        if (m != s.messages.end() && (*m)->seq == seq && (*m)->expires_at > now) {
          result.message = *m;
          result.duplicate = true;
        }
      }
    }
    if (!result.duplicate) {
      std::string id = request.message_id.empty() ? NewMessageId() : std::move(request.message_id);
      MessagePtr m = MakeMessage(s.last_seq + 1, std::move(id), now, now + request.ttl,
                                 std::move(request.payload));
      s.last_seq = m->seq;
      AddBytes(static_cast<int64_t>(m->Footprint()));
      s.ids[m->id] = m->seq;
      s.earliest_expiry = std::min(s.earliest_expiry, m->expires_at);
      s.messages.push_back(m);
      while (s.messages.size() > options_.history_size) {
        PopFront(shard, s);
        GlobalMetrics().store_evictions.fetch_add(1, std::memory_order_relaxed);
      }
      result.message = std::move(m);
    }
    Touch(shard, s);
  }
  if (bytes_.load(std::memory_order_relaxed) > options_.max_bytes) EvictIfOverBudget();
  // Outside the shard lock: a connection's replay may read the store from here.
  if (!result.duplicate && sink_ != nullptr) {
    result.delivered = sink_->OnPublication(request.user_id, result.message);
  }
  done(std::move(result));
}

void MemoryStore::EvictIfOverBudget() {
  // One evictor at a time; others go on, the running one brings the total down for all.
  if (!evict_mu_.TryLock()) return;
  while (bytes_.load(std::memory_order_relaxed) > options_.max_bytes) {
    // Messages of the least recently active users go first; only when no stream holds any
    // does the oldest empty stream's seq and cursor get forgotten.
    bool evicted = false;
    for (int list = 0; list < 2 && !evicted; ++list) {
      Shard* victim_shard = nullptr;
      absl::Time oldest = absl::InfiniteFuture();
      for (auto& shard : shards_) {
        absl::MutexLock lock(&shard->mu);
        Stream* head = shard->lru_head[list];
        if (head != nullptr && head->last_active < oldest) {
          oldest = head->last_active;
          victim_shard = shard.get();
        }
      }
      if (victim_shard == nullptr) continue;
      absl::MutexLock lock(&victim_shard->mu);
      Stream* s = victim_shard->lru_head[list];
      if (s == nullptr) {
        evicted = true;  // raced with another thread; look again
        continue;
      }
      if (list == 0) {
        while (!s->messages.empty()) {
          PopFront(*victim_shard, *s);
          GlobalMetrics().store_evictions.fetch_add(1, std::memory_order_relaxed);
        }
      } else {
        victim_shard->Unlink(*s);
        AddBytes(-static_cast<int64_t>(s->MetadataFootprint()));
        victim_shard->streams.erase(s->user_id);
      }
      evicted = true;
    }
    if (!evicted) break;
  }
  evict_mu_.Unlock();
}

void MemoryStore::Read(ReadRequest request,
                       absl::AnyInvocable<void(absl::StatusOr<ReadResult>)> done) {
  Shard& shard = ShardFor(request.user_id);
  ReadResult result;
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.streams.find(request.user_id);
    if (it != shard.streams.end()) {
      Stream& s = *it->second;
      Touch(shard, s);
      result.last_seq = s.last_seq;
      result.after = request.after.value_or(s.cursor);
      absl::Time now = clock_->Now();
      auto m = std::upper_bound(s.messages.begin(), s.messages.end(), result.after,
                                [](uint64_t v, const MessagePtr& p) { return v < p->seq; });
      size_t bytes = 0;
      for (; m != s.messages.end(); ++m) {
        if ((*m)->expires_at <= now) continue;
        if (!result.messages.empty() && (result.messages.size() >= request.max_messages ||
                                         bytes + (*m)->FrameSize() > request.max_bytes)) {
          result.more = true;
          break;
        }
        bytes += (*m)->FrameSize();
        result.messages.push_back(*m);
      }
    } else {
      result.after = request.after.value_or(0);
    }
  }
  done(std::move(result));
}

void MemoryStore::AdvanceCursor(std::string_view user_id, uint64_t seq) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.streams.find(user_id);
  if (it == shard.streams.end()) return;
  Stream& s = *it->second;
  s.cursor = std::max(s.cursor, std::min(seq, s.last_seq));
}

uint64_t MemoryStore::Cursor(std::string_view user_id) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.streams.find(user_id);
  return it == shard.streams.end() ? 0 : it->second->cursor;
}

void MemoryStore::Purge(std::string_view user_id, absl::AnyInvocable<void(absl::Status)> done) {
  Shard& shard = ShardFor(user_id);
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.streams.find(user_id);
    if (it != shard.streams.end()) {
      Stream& s = *it->second;
      while (!s.messages.empty()) PopFront(shard, s);
      s.cursor = s.last_seq;
    }
  }
  done(absl::OkStatus());
}

void MemoryStore::Sweep() {
  absl::Time now = clock_->Now();
  for (auto& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    for (Stream* s = shard->lru_head[0]; s != nullptr;) {
      Stream* next = s->lru_next;
      if (s->earliest_expiry <= now) RemoveExpired(*shard, *s, now);
      s = next;
    }
  }
}

void MemoryStore::RemoveExpired(Shard& shard, Stream& s, absl::Time now) {
  // Messages expire out of order when their ttls differ: drop them wherever they are.
  std::deque<MessagePtr> kept;
  absl::Time earliest = absl::InfiniteFuture();
  for (MessagePtr& m : s.messages) {
    if (m->expires_at <= now) {
      Forget(s, *m);
      GlobalMetrics().store_expirations.fetch_add(1, std::memory_order_relaxed);
    } else {
      earliest = std::min(earliest, m->expires_at);
      kept.push_back(std::move(m));
    }
  }
  s.messages = std::move(kept);
  s.earliest_expiry = earliest;
  if (s.messages.empty()) shard.Relink(s);
}

}  // namespace push::store
