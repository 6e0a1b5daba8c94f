#include "common/delivery/memory_store.h"

#include <algorithm>
#include <optional>
#include <string_view>
#include <tuple>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/base/ids.h"
#include "common/base/metrics.h"
#include "common/base/strings.h"

namespace push::store {

// One device's marks (or, inline in the Stream, those of the user's connections without one).
struct Marks {
  uint64_t cursor = 0;   // delivered: replay starts after it
  uint64_t written = 0;  // the highest seq written to a connection's socket
  uint64_t acked = 0;    // the highest seq acknowledged by an ack=1 connection

  void Move(uint64_t seq, Progress progress) {
    written = std::max(written, seq);
    if (progress != Progress::kWrittenAwaitingAck) cursor = std::max(cursor, seq);
    if (progress == Progress::kAcked) acked = std::max(acked, seq);
  }
  // Whether the device shows in the receipts of `seq`, and as what.
  std::optional<DeviceReceipt> Receipt(std::string device_id, uint64_t seq) const {
    if (std::max(written, acked) < seq) return std::nullopt;
    return DeviceReceipt{std::move(device_id), acked >= seq, cursor};
  }
};

namespace {

// Whether a message's id has an entry in its stream's `ids`: not when the id names the message's
// own seq (made by the store, or given by a caller in that shape), which FindSeq finds without
// one. Append and Forget ask the same question of the same message, so they agree.
bool Indexed(const Message& m) {
  std::optional<uint64_t> seq = SeqOfMessageId(m.id);
  return !seq || *seq != (m.seq & kSeqMessageIdMask);
}

// The retained message with `seq` in `messages` (increasing seq), or end.
std::deque<MessagePtr>::const_iterator FindBySeq(const std::deque<MessagePtr>& messages,
                                                 uint64_t seq) {
  auto m = std::lower_bound(messages.begin(), messages.end(), seq,
                            [](const MessagePtr& p, uint64_t v) { return p->seq < v; });
  return m != messages.end() && (*m)->seq == seq ? m : messages.end();
}

}  // namespace

struct MemoryStore::Device {
  Marks marks;
  absl::Time last_active;

  static size_t Footprint(const std::string& id) {
    // The map's slot (key and value) and a control byte, with the key's heap copy when it has one.
    return sizeof(std::pair<const std::string, Device>) + 1 +
           (id.capacity() > 15 ? id.capacity() + 1 : 0);
  }
};

struct MemoryStore::DeviceTable : StringMap<Device> {
  // A lower bound of the devices' expiry times, so Sweep only looks at tables that may hold an
  // expired one.
  absl::Time expiry = absl::InfiniteFuture();
};

struct MemoryStore::Stream {
  std::string user_id;
  uint64_t last_seq = 0;
  uint64_t cursor = 0;
  // The written and acked marks of the connections without a device (whose cursor is `cursor`).
  uint64_t written = 0;
  uint64_t acked = 0;
  // The user's devices (null: none).
  std::unique_ptr<DeviceTable> devices;
  std::deque<MessagePtr> messages;  // increasing seq
  // Idempotency keys of retained messages whose id the caller gave (Indexed): the ids the store
  // makes carry their seq and are found by it (FindSeq), so a push without a message_id costs no
  // hashing, no table probe and no table memory. A key views the id inside its message (no copy
  // per message); Forget removes it before the message leaves `messages`, and a newer message with
  // the same id replaces the key (Append), so no key outlives the message it views.
  absl::flat_hash_map<std::string_view, uint64_t, StringViewHash, StringViewEq> ids;
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

void MemoryStore::Touch(Shard& shard, Stream& s, absl::Time now) {
  s.last_active = now;
  shard.Relink(s);
}

void MemoryStore::AddBytes(int64_t delta) {
  bytes_.fetch_add(static_cast<uint64_t>(delta), std::memory_order_relaxed);
  GlobalMetrics().store_bytes.fetch_add(delta, std::memory_order_relaxed);
}

void MemoryStore::Forget(Stream& s, const Message& m) {
  // The key may already name a newer message with the same id (this one had expired).
  if (Indexed(m)) {
    if (auto it = s.ids.find(m.id); it != s.ids.end() && it->second == m.seq) s.ids.erase(it);
  }
  AddBytes(-static_cast<int64_t>(m.Footprint()));
}

std::deque<MessagePtr>::const_iterator MemoryStore::FindSeq(const Stream& s,
                                                            std::string_view message_id) {
  if (auto it = s.ids.find(message_id); it != s.ids.end()) return FindBySeq(s.messages, it->second);
  // Not given by a caller: an id the store made names its seq (the other 16 bits of a seq past
  // 2^48 are those of the latest message's).
  std::optional<uint64_t> low = SeqOfMessageId(message_id);
  if (!low || s.messages.empty()) return s.messages.end();
  uint64_t seq = (s.last_seq & ~kSeqMessageIdMask) | *low;
  if (seq > s.last_seq) seq -= kSeqMessageIdMask + 1;
  auto m = FindBySeq(s.messages, seq);
  return m != s.messages.end() && (*m)->id == message_id && !Indexed(**m) ? m : s.messages.end();
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
    // Expired messages at the front go first so they neither count nor dedupe (none has expired
    // before the stream's earliest expiry: the front message is not even looked at).
    while (s.earliest_expiry <= now && !s.messages.empty() &&
           s.messages.front()->expires_at <= now) {
      PopFront(shard, s);
      GlobalMetrics().store_expirations.fetch_add(1, std::memory_order_relaxed);
    }
    if (!request.message_id.empty()) {
      if (auto m = FindSeq(s, request.message_id); m != s.messages.end()) {
        if ((*m)->expires_at > now) {
          result.message = *m;
          result.duplicate = true;
        }
      }
    }
    if (!result.duplicate) {
      uint64_t seq = s.last_seq + 1;
      std::string id =
          request.message_id.empty() ? NewSeqMessageId(seq) : std::move(request.message_id);
      MessagePtr m =
          MakeMessage(seq, std::move(id), now, now + request.ttl, std::move(request.payload));
      s.last_seq = m->seq;
      AddBytes(static_cast<int64_t>(m->Footprint()));
      if (Indexed(*m)) {
        // An older message with this id (expired, not yet dropped) may hold the key: the key must
        // view the new message's id from now on.
        auto [it, inserted] = s.ids.emplace(std::string_view(m->id), m->seq);
        if (!inserted) {
          s.ids.erase(it);
          s.ids.emplace(std::string_view(m->id), m->seq);
        }
      }
      s.earliest_expiry = std::min(s.earliest_expiry, m->expires_at);
      shard.earliest_expiry = std::min(shard.earliest_expiry, m->expires_at);
      s.messages.push_back(m);
      while (s.messages.size() > options_.history_size) {
        PopFront(shard, s);
        GlobalMetrics().store_evictions.fetch_add(1, std::memory_order_relaxed);
      }
      result.message = std::move(m);
    }
    Touch(shard, s, now);
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
        DropAllDevices(*victim_shard, *s);
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
      absl::Time now = clock_->Now();
      Touch(shard, s, now);
      result.last_seq = s.last_seq;
      uint64_t cursor = s.cursor;
      if (!request.device_id.empty()) {
        cursor = ActiveDevice(shard, s, request.device_id, now).marks.cursor;
      }
      result.after = request.after.value_or(cursor);
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

void MemoryStore::Advance(std::string_view user_id, std::string_view device_id, uint64_t seq,
                          Progress progress) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.streams.find(user_id);
  if (it == shard.streams.end()) return;
  Stream& s = *it->second;
  seq = std::min(seq, s.last_seq);
  if (device_id.empty()) {
    Marks marks{s.cursor, s.written, s.acked};
    marks.Move(seq, progress);
    std::tie(s.cursor, s.written, s.acked) = std::tie(marks.cursor, marks.written, marks.acked);
    return;
  }
  ActiveDevice(shard, s, device_id, clock_->Now()).marks.Move(seq, progress);
}

void MemoryStore::TouchDevice(std::string_view user_id, std::string_view device_id) {
  if (device_id.empty()) return;
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.streams.find(user_id);
  if (it == shard.streams.end()) return;
  absl::Time now = clock_->Now();
  if (Device* device = FindDevice(shard, *it->second, device_id, now)) device->last_active = now;
}

void MemoryStore::Receipts(ReceiptsRequest request,
                           absl::AnyInvocable<void(absl::StatusOr<ReceiptsResult>)> done) {
  Shard& shard = ShardFor(request.user_id);
  absl::Status status;
  ReceiptsResult result;
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.streams.find(request.user_id);
    Stream* s = it == shard.streams.end() ? nullptr : it->second.get();
    absl::Time now = clock_->Now();
    if (!request.message_id.empty()) {
      std::optional<uint64_t> seq;
      if (s != nullptr) {
        if (auto m = FindSeq(*s, request.message_id);
            m != s->messages.end() && (*m)->expires_at > now) {
          seq = (*m)->seq;
        }
      }
      if (!seq) {
        status = NotRetainedError(request.user_id, request.message_id);
      } else {
        result.seq = *seq;
      }
    } else {
      uint64_t last = s == nullptr ? 0 : s->last_seq;
      if (request.seq == 0 || request.seq > last) {
        status = PastLatestError(request.user_id, request.seq, last);
      } else {
        result.seq = request.seq;
      }
    }
    if (status.ok()) {
      Marks shared{s->cursor, s->written, s->acked};
      if (auto r = shared.Receipt("", result.seq)) result.receipts.push_back(std::move(*r));
      if (s->devices) {
        for (const auto& [id, device] : *s->devices) {
          if (device.last_active + options_.devices.ttl <= now) continue;  // expired
          if (auto r = device.marks.Receipt(id, result.seq)) {
            result.receipts.push_back(std::move(*r));
          }
        }
      }
      std::sort(
          result.receipts.begin(), result.receipts.end(),
          [](const DeviceReceipt& a, const DeviceReceipt& b) { return a.device_id < b.device_id; });
    }
  }
  if (!status.ok()) return done(std::move(status));
  done(std::move(result));
}

size_t MemoryStore::DeviceCount(std::string_view user_id) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.streams.find(user_id);
  if (it == shard.streams.end() || !it->second->devices) return 0;
  return it->second->devices->size();
}

MemoryStore::Device* MemoryStore::FindDevice(Shard& shard, Stream& s, std::string_view device_id,
                                             absl::Time now) {
  if (!s.devices) return nullptr;
  auto it = s.devices->find(device_id);
  if (it == s.devices->end()) return nullptr;
  if (it->second.last_active + options_.devices.ttl <= now) {
    DropDevice(shard, s, device_id);
    return nullptr;
  }
  return &it->second;
}

MemoryStore::Device& MemoryStore::ActiveDevice(Shard& shard, Stream& s, std::string_view device_id,
                                               absl::Time now) {
  Device* device = FindDevice(shard, s, device_id, now);
  if (device == nullptr) {
    const uint32_t limit = std::max<uint32_t>(1, options_.devices.max_per_user);
    if (s.devices && s.devices->size() >= limit) DropExpiredDevices(shard, s, now);
    while (s.devices && s.devices->size() >= limit) {
      // The least recently active goes (ties: the smallest id, so the choice is stable).
      auto oldest = s.devices->begin();
      for (auto it = s.devices->begin(); it != s.devices->end(); ++it) {
        if (std::tie(it->second.last_active, it->first) <
            std::tie(oldest->second.last_active, oldest->first)) {
          oldest = it;
        }
      }
      std::string victim = oldest->first;
      DropDevice(shard, s, victim);
    }
    if (!s.devices) {
      s.devices = std::make_unique<DeviceTable>();
      shard.with_devices.insert(&s);
      AddBytes(static_cast<int64_t>(sizeof(DeviceTable)));
    }
    auto [it, inserted] = s.devices->try_emplace(device_id);
    AddBytes(static_cast<int64_t>(Device::Footprint(it->first)));
    s.devices->expiry = std::min(s.devices->expiry, now + options_.devices.ttl);
    shard.earliest_device_expiry = std::min(shard.earliest_device_expiry, s.devices->expiry);
    device = &it->second;
  }
  device->last_active = now;
  return *device;
}

void MemoryStore::DropDevice(Shard& shard, Stream& s, std::string_view device_id) {
  auto it = s.devices->find(device_id);
  if (it == s.devices->end()) return;
  AddBytes(-static_cast<int64_t>(Device::Footprint(it->first)));
  s.devices->erase(it);
  // The table stays while `s` holds devices; an empty one goes at once (ActiveDevice, which is
  // the only caller that goes on using it, makes it again).
  if (s.devices->empty()) DropAllDevices(shard, s);
}

void MemoryStore::DropAllDevices(Shard& shard, Stream& s) {
  if (!s.devices) return;
  for (const auto& [id, device] : *s.devices) {
    AddBytes(-static_cast<int64_t>(Device::Footprint(id)));
  }
  AddBytes(-static_cast<int64_t>(sizeof(DeviceTable)));
  s.devices.reset();
  shard.with_devices.erase(&s);
}

void MemoryStore::DropExpiredDevices(Shard& shard, Stream& s, absl::Time now) {
  if (!s.devices) return;
  std::vector<std::string> expired;
  absl::Time earliest = absl::InfiniteFuture();
  for (const auto& [id, device] : *s.devices) {
    absl::Time expiry = device.last_active + options_.devices.ttl;
    if (expiry <= now) {
      expired.push_back(id);
    } else {
      earliest = std::min(earliest, expiry);
    }
  }
  for (const std::string& id : expired) {
    if (!s.devices) break;
    DropDevice(shard, s, id);
  }
  if (s.devices) s.devices->expiry = earliest;
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
      if (s.devices) {
        for (auto& [id, device] : *s.devices) device.marks.cursor = s.last_seq;
      }
    }
  }
  done(absl::OkStatus());
}

void MemoryStore::Sweep() {
  absl::Time now = clock_->Now();
  for (auto& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    if (shard->earliest_expiry <= now) {
      absl::Time earliest = absl::InfiniteFuture();
      for (Stream* s = shard->lru_head[0]; s != nullptr;) {
        Stream* next = s->lru_next;
        if (s->earliest_expiry <= now) RemoveExpired(*shard, *s, now);
        earliest = std::min(earliest, s->earliest_expiry);
        s = next;
      }
      shard->earliest_expiry = earliest;
    }
    if (shard->earliest_device_expiry <= now) {
      std::vector<Stream*> due;
      absl::Time earliest = absl::InfiniteFuture();
      for (Stream* s : shard->with_devices) {
        if (s->devices->expiry <= now) {
          due.push_back(s);
        } else {
          earliest = std::min(earliest, s->devices->expiry);
        }
      }
      for (Stream* s : due) {
        DropExpiredDevices(*shard, *s, now);
        if (s->devices) earliest = std::min(earliest, s->devices->expiry);
      }
      shard->earliest_device_expiry = earliest;
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
