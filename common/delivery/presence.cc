#include "common/delivery/presence.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#include "absl/hash/hash.h"
#include "common/base/metrics.h"

namespace push::presence {

namespace {

// Little-endian base-128 lengths: one byte below 128.
size_t VarintSize(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) ++n;
  return n;
}

char* PutVarint(char* p, uint64_t v) {
  for (; v >= 0x80; v >>= 7) *p++ = static_cast<char>((v & 0x7f) | 0x80);
  *p++ = static_cast<char>(v);
  return p;
}

const char* GetVarint(const char* p, uint64_t* v) {
  uint64_t out = 0;
  for (int shift = 0;; shift += 7) {
    const uint8_t b = static_cast<uint8_t>(*p++);
    out |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) break;
  }
  *v = out;
  return p;
}

}  // namespace

// ---- SharedStrings ----

uint32_t SharedStrings::Hold(std::string_view s) {
  if (auto it = ids_.find(s); it != ids_.end()) {
    ++entries_[it->second].holders;
    return it->second;
  }
  if (s.size() > max_length_ || ids_.size() >= std::min<size_t>(max_entries_, kNone - 1)) {
    return kNone;
  }
  uint32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
    entries_[id].value = std::string(s);
  } else {
    id = static_cast<uint32_t>(entries_.size());
    entries_.push_back(Entry{std::string(s), 0});
  }
  entries_[id].holders = 1;
  ids_.emplace(std::string(s), id);
  return id;
}

uint32_t SharedStrings::Find(std::string_view s) const {
  auto it = ids_.find(s);
  return it == ids_.end() ? kNone : it->second;
}

void SharedStrings::Release(uint32_t id) {
  Entry& e = entries_[id];
  if (--e.holders > 0) return;
  ids_.erase(e.value);
  std::string().swap(e.value);
  free_.push_back(id);
}

void SharedStrings::Clear() {
  entries_.clear();
  free_.clear();
  ids_.clear();
}

// ---- PresenceState ----

// One heap block: this header, then the id's bytes.
struct PresenceState::User {
  uint32_t connections = 0;
  uint32_t size = 0;

  std::string_view id() const { return {reinterpret_cast<const char*>(this + 1), size}; }

  static User* Make(std::string_view id) {
    void* p = ::operator new(sizeof(User) + id.size());
    User* u = new (p) User;
    u->size = static_cast<uint32_t>(id.size());
    std::memcpy(u + 1, id.data(), id.size());
    return u;
  }
  static void Free(User* u) { ::operator delete(u); }
};

// One heap block: this header, the connection id's bytes, the device id's length (varint) and
// bytes.
struct PresenceState::Open {
  User* user = nullptr;
  uint32_t node = 0;  // in nodes_
  uint32_t id_size = 0;

  const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
  std::string_view id() const { return {bytes(), id_size}; }
  std::string_view device() const {
    uint64_t size;
    const char* p = GetVarint(bytes() + id_size, &size);
    return {p, static_cast<size_t>(size)};
  }

  static Open* Make(User* user, uint32_t node, std::string_view id, std::string_view device) {
    void* p = ::operator new(sizeof(Open) + id.size() + VarintSize(device.size()) + device.size());
    Open* o = new (p) Open;
    o->user = user;
    o->node = node;
    o->id_size = static_cast<uint32_t>(id.size());
    char* out = reinterpret_cast<char*>(o + 1);
    std::memcpy(out, id.data(), id.size());
    out = PutVarint(out + id.size(), device.size());
    std::memcpy(out, device.data(), device.size());
    return o;
  }
  static void Free(Open* o) { ::operator delete(o); }
};

size_t PresenceState::UserHash::operator()(std::string_view id) const {
  return StringViewHash{}(id);
}
size_t PresenceState::UserHash::operator()(const User* u) const { return (*this)(u->id()); }
bool PresenceState::UserEq::operator()(const User* a, const User* b) const {
  return a->id() == b->id();
}
bool PresenceState::UserEq::operator()(const User* a, std::string_view b) const {
  return a->id() == b;
}
size_t PresenceState::OpenHash::operator()(const OpenKey& k) const {
  return absl::HashOf(k.node, ToAbsl(k.id));
}
size_t PresenceState::OpenHash::operator()(const Open* o) const {
  return (*this)(OpenKey{o->node, o->id()});
}
bool PresenceState::OpenEq::operator()(const Open* a, const Open* b) const {
  return a->node == b->node && a->id() == b->id();
}
bool PresenceState::OpenEq::operator()(const Open* a, const OpenKey& b) const {
  return a->node == b.node && a->id() == b.id;
}

PresenceState::~PresenceState() {
  for (Open* o : connections_) Open::Free(o);
  for (User* u : users_) User::Free(u);
}

void PresenceState::Connected(std::string_view node, const ConnectionInfo& c, absl::Time now,
                              std::vector<Event>* out) {
  if (uint32_t n = nodes_.Find(node);
      n != SharedStrings::kNone && connections_.contains(OpenKey{n, c.connection_id})) {
    return;
  }
  Event e;
  e.kind = Kind::kConnected;
  e.user_id = c.user_id;
  e.connection_id = c.connection_id;
  e.device_id = c.device_id;
  e.node_id = std::string(node);
  e.at = now;
  out->push_back(e);
  bool first = false;
  auto user = users_.find(std::string_view(c.user_id));
  if (user == users_.end()) {
    user = users_.insert(User::Make(c.user_id)).first;
    first = true;
  }
  User* u = *user;
  connections_.insert(Open::Make(u, nodes_.Hold(node), c.connection_id, c.device_id));
  ++u->connections;
  if (auto leaving = leaving_.find(u); leaving != leaving_.end()) {  // its due_ entry is skipped
    nodes_.Release(leaving->second.last_node);
    leaving_.erase(leaving);
  }
  if (first) {
    e.kind = Kind::kOnline;
    e.connection_id.clear();
    e.device_id.clear();
    out->push_back(std::move(e));
  }
}

void PresenceState::Disconnected(std::string_view node, std::string_view connection_id,
                                 std::string_view reason, absl::Time now, std::vector<Event>* out) {
  const uint32_t n = nodes_.Find(node);
  if (n == SharedStrings::kNone) return;
  auto it = connections_.find(OpenKey{n, connection_id});
  if (it == connections_.end()) return;
  Open* o = *it;
  User* u = o->user;
  Event e;
  e.kind = Kind::kDisconnected;
  e.user_id = std::string(u->id());
  e.connection_id = std::string(connection_id);
  e.device_id = std::string(o->device());
  e.node_id = std::string(node);
  e.reason = std::string(reason);
  e.at = now;
  connections_.erase(it);
  Open::Free(o);
  if (u->connections > 0 && --u->connections == 0) {
    // The connection's hold on the node passes to the user's departure.
    auto [leaving, fresh] = leaving_.try_emplace(u, Leaving{now, n});
    if (!fresh) {
      nodes_.Release(leaving->second.last_node);
      leaving->second = Leaving{now, n};
    }
    due_.emplace(now + offline_delay_, e.user_id);
  } else {
    nodes_.Release(n);
  }
  out->push_back(std::move(e));
}

void PresenceState::NodeLost(std::string_view node, absl::Time now, std::vector<Event>* out) {
  const uint32_t n = nodes_.Find(node);
  if (n == SharedStrings::kNone) return;
  std::vector<std::string> ids;
  for (const Open* o : connections_) {
    // (An empty connection id is left alone, as the rules always did.)
    if (o->node == n && o->id_size > 0) ids.emplace_back(o->id());
  }
  std::sort(ids.begin(), ids.end());  // a stable order for the same state
  for (const std::string& id : ids) Disconnected(node, id, kNodeLost, now, out);
}

void PresenceState::Expire(absl::Time now, std::vector<Event>* out) {
  while (!due_.empty() && due_.begin()->first <= now) {
    auto entry = due_.begin();
    std::string user_id = std::move(entry->second);
    absl::Time due = entry->first;
    due_.erase(entry);
    auto user = users_.find(std::string_view(user_id));
    if (user == users_.end()) continue;
    User* u = *user;
    // Reconnected meanwhile (and maybe left again: a later entry is the one that counts).
    auto leaving = leaving_.find(u);
    if (u->connections > 0 || leaving == leaving_.end() ||
        leaving->second.since + offline_delay_ != due) {
      continue;
    }
    Event e;
    e.kind = Kind::kOffline;
    e.user_id = std::move(user_id);
    e.node_id = std::string(nodes_.Get(leaving->second.last_node));
    e.at = now;
    nodes_.Release(leaving->second.last_node);
    leaving_.erase(leaving);
    users_.erase(user);
    User::Free(u);
    out->push_back(std::move(e));
  }
}

absl::Time PresenceState::NextDue() const {
  return due_.empty() ? absl::InfiniteFuture() : due_.begin()->first;
}

// ---- Feed ----
//
// Each event is packed into its block's bytes:
//   a header byte: the kind in bits 0-2 (kKindByte: in a byte of its own after the header), and
//     the flags below;
//   the time: 8 bytes of Unix nanoseconds, or (kRawTime) absl::Time's own 16 bytes when it is not
//     a whole number of nanoseconds in range; none with kSameTime (the event before's);
//   the user id (none with kSameUser: the event before's), connection id and device id: each
//     its length (varint) and bytes;
//   the node id and the reason: each a varint tag, 2 x id + 1 for a string in strings_, or
//     2 x length followed by the bytes.
// kSameTime and kSameUser point only at the event just before in the same block, and only when
// that one holds its own (so a read looks back once at most); a block is freed only once all its
// events are gone, so the one looked at is there. The block's back holds one uint16 offset per
// event, the first event's at the very end. An ONLINE after its CONNECTED takes 3-4 bytes.

namespace {

constexpr uint32_t kBlockBytes = 64 * 1024;
constexpr size_t kMaxSharedStrings = 4096;
constexpr size_t kMaxSharedLength = 255;

constexpr uint8_t kKindBits = 0x07;
constexpr uint8_t kKindByte = 0x08;
constexpr uint8_t kSameTime = 0x10;
constexpr uint8_t kRawTime = 0x20;
constexpr uint8_t kSameUser = 0x40;

static_assert(std::is_trivially_copyable_v<absl::Time>);

// Where a packed event's parts are.
struct Packed {
  uint8_t flags = 0;
  Kind kind = Kind::kConnected;
  absl::Time at;          // unless kSameTime
  std::string_view user;  // unless kSameUser
  std::string_view connection;
  std::string_view device;
  uint32_t node = SharedStrings::kNone;  // in strings_, else node_bytes
  std::string_view node_bytes;
  uint32_t reason = SharedStrings::kNone;
  std::string_view reason_bytes;
};

const char* GetString(const char* p, std::string_view* s) {
  uint64_t size;
  p = GetVarint(p, &size);
  *s = {p, static_cast<size_t>(size)};
  return p + size;
}

const char* GetTagged(const char* p, uint32_t* id, std::string_view* s) {
  uint64_t tag;
  p = GetVarint(p, &tag);
  if (tag & 1) {
    *id = static_cast<uint32_t>(tag >> 1);
    return p;
  }
  *id = SharedStrings::kNone;
  *s = {p, static_cast<size_t>(tag >> 1)};
  return p + (tag >> 1);
}

Packed Unpack(const char* p) {
  Packed out;
  out.flags = static_cast<uint8_t>(*p++);
  out.kind = static_cast<Kind>(out.flags & kKindBits);
  if (out.flags & kKindByte) out.kind = static_cast<Kind>(static_cast<uint8_t>(*p++));
  if (!(out.flags & kSameTime)) {
    if (out.flags & kRawTime) {
      std::memcpy(&out.at, p, sizeof(absl::Time));
      p += sizeof(absl::Time);
    } else {
      int64_t nanos;
      std::memcpy(&nanos, p, sizeof(nanos));
      out.at = absl::FromUnixNanos(nanos);
      p += sizeof(nanos);
    }
  }
  if (!(out.flags & kSameUser)) p = GetString(p, &out.user);
  p = GetString(p, &out.connection);
  p = GetString(p, &out.device);
  p = GetTagged(p, &out.node, &out.node_bytes);
  GetTagged(p, &out.reason, &out.reason_bytes);
  return out;
}

const char* EventAt(const char* data, uint32_t capacity, uint32_t i) {
  uint16_t offset;
  std::memcpy(&offset, data + capacity - 2 * (static_cast<size_t>(i) + 1), sizeof(offset));
  return data + offset;
}

// The event `i` of a block, with the time and user id of the one before when it shares them.
Packed UnpackAt(const char* data, uint32_t capacity, uint32_t i) {
  Packed e = Unpack(EventAt(data, capacity, i));
  if (e.flags & (kSameTime | kSameUser)) {
    Packed before = Unpack(EventAt(data, capacity, i - 1));
    if (e.flags & kSameTime) e.at = before.at;
    if (e.flags & kSameUser) e.user = before.user;
  }
  return e;
}

}  // namespace

Feed::Feed(Options options) : options_(options), strings_(kMaxSharedStrings, kMaxSharedLength) {}

Feed::~Feed() = default;

void Feed::AppendLocked(const Event& e) {
  const uint8_t kind = static_cast<uint8_t>(e.kind);
  const int64_t nanos = absl::ToUnixNanos(e.at);
  const bool raw_time = absl::FromUnixNanos(nanos) != e.at;
  const uint32_t node = e.node_id.empty() ? SharedStrings::kNone : strings_.Hold(e.node_id);
  const uint32_t reason = e.reason.empty() ? SharedStrings::kNone : strings_.Hold(e.reason);
  auto string_size = [](std::string_view s) { return VarintSize(s.size()) + s.size(); };
  auto tagged_size = [&](uint32_t id, std::string_view s) {
    return id != SharedStrings::kNone ? VarintSize(2 * uint64_t{id} + 1) : string_size(s);
  };
  const size_t time_size = raw_time ? sizeof(absl::Time) : sizeof(nanos);
  const size_t user_size = string_size(e.user_id);
  uint8_t flags = kind > kKindBits ? kKindByte : kind;
  if (raw_time) flags |= kRawTime;
  size_t size = 1 + (kind > kKindBits ? 1 : 0) + time_size + user_size +
                string_size(e.connection_id) + string_size(e.device_id) +
                tagged_size(node, e.node_id) + tagged_size(reason, e.reason);

  Block* b = blocks_.empty() ? nullptr : &blocks_.back();
  if (b != nullptr && b->count > 0) {
    Packed before = Unpack(EventAt(b->data.get(), b->capacity, b->count - 1));
    if (!(before.flags & kSameTime) && before.at == e.at) {
      flags = (flags & ~kRawTime) | kSameTime;
      size -= time_size;
    }
    if (!(before.flags & kSameUser) && before.user == e.user_id) {
      flags |= kSameUser;
      size -= user_size;
    }
  }
  // Room for the bytes and one offset, which must fit in 16 bits.
  if (b == nullptr || b->used > 0xffff ||
      b->used + size + 2 * (size_t{b->count} + 1) > b->capacity) {
    // A new block: nothing before it to share.
    if (flags & kSameTime) {
      flags = (flags & ~kSameTime) | (raw_time ? kRawTime : 0);
      size += time_size;
    }
    if (flags & kSameUser) {
      flags &= ~kSameUser;
      size += user_size;
    }
    Block fresh;
    fresh.capacity = static_cast<uint32_t>(std::max<size_t>(kBlockBytes, size + 2));
    fresh.data.reset(new char[fresh.capacity]);
    fresh.first = e.cursor;
    blocks_.push_back(std::move(fresh));
    b = &blocks_.back();
  }

  char* const start = b->data.get() + b->used;
  char* p = start;
  *p++ = static_cast<char>(flags);
  if (flags & kKindByte) *p++ = static_cast<char>(kind);
  if (!(flags & kSameTime)) {
    if (flags & kRawTime) {
      std::memcpy(p, &e.at, sizeof(absl::Time));
      p += sizeof(absl::Time);
    } else {
      std::memcpy(p, &nanos, sizeof(nanos));
      p += sizeof(nanos);
    }
  }
  auto put_string = [&p](std::string_view s) {
    p = PutVarint(p, s.size());
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  auto put_tagged = [&](uint32_t id, std::string_view s) {
    if (id != SharedStrings::kNone) {
      p = PutVarint(p, 2 * uint64_t{id} + 1);
    } else {
      p = PutVarint(p, 2 * uint64_t{s.size()});
      std::memcpy(p, s.data(), s.size());
      p += s.size();
    }
  };
  if (!(flags & kSameUser)) put_string(e.user_id);
  put_string(e.connection_id);
  put_string(e.device_id);
  put_tagged(node, e.node_id);
  put_tagged(reason, e.reason);
  assert(static_cast<size_t>(p - start) == size);
  const uint16_t offset = static_cast<uint16_t>(b->used);
  std::memcpy(b->data.get() + b->capacity - 2 * (size_t{b->count} + 1), &offset, sizeof(offset));
  b->used += static_cast<uint32_t>(size);
  ++b->count;
  ++size_;
}

void Feed::PopFrontLocked() {
  Block& b = blocks_.front();
  Packed e = Unpack(EventAt(b.data.get(), b.capacity, dropped_));
  if (e.node != SharedStrings::kNone) strings_.Release(e.node);
  if (e.reason != SharedStrings::kNone) strings_.Release(e.reason);
  --size_;
  if (++dropped_ == b.count) {
    blocks_.pop_front();
    dropped_ = 0;
  }
}

void Feed::ClearLocked() {
  blocks_.clear();
  dropped_ = 0;
  size_ = 0;
  strings_.Clear();
}

void Feed::Publish(std::vector<Event> events) {
  if (events.empty()) return;
  absl::MutexLock lock(&mu_);
  for (const Event& e : events) {
    // The held events' cursors are consecutive: one that does not follow last() starts the feed
    // over (what came between is only in the log).
    if (e.cursor != last_ + 1) ClearLocked();
    AppendLocked(e);
    last_ = e.cursor;
    while (size_ > options_.capacity) PopFrontLocked();
  }
  const uint64_t last = last_;
  WakeLocked([last](uint64_t after) { return after < last; });
}

void Feed::Reset(uint64_t last) {
  absl::MutexLock lock(&mu_);
  if (last == last_) return;
  ClearLocked();
  last_ = last;
  WakeLocked([](uint64_t) { return true; });
}

template <class Due>
void Feed::WakeLocked(Due due) {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (due(it->second)) {
      it->first->Wake();
      waiters_.erase(it++);
    } else {
      ++it;
    }
  }
}

void Feed::TrimLocked(absl::Time now) {
  while (size_ > 0) {
    const Block& b = blocks_.front();
    if (UnpackAt(b.data.get(), b.capacity, dropped_).at + options_.retention >= now) break;
    PopFrontLocked();
  }
}

void Feed::Trim() {
  absl::MutexLock lock(&mu_);
  TrimLocked(options_.clock->Now());
}

Feed::Read Feed::Take(uint64_t after, size_t max, std::vector<Event>* out) const {
  absl::MutexLock lock(&mu_);
  if (after > last_) return Read::kAhead;
  if (after == last_) return Read::kOk;
  if (after + 1 < FirstLocked()) return Read::kBefore;
  // The block holding the next event: the last one that starts at or before it.
  const uint64_t next = after + 1;
  auto it = std::upper_bound(blocks_.begin(), blocks_.end(), next,
                             [](uint64_t cursor, const Block& b) { return cursor < b.first; });
  --it;
  for (uint32_t i = static_cast<uint32_t>(next - it->first); it != blocks_.end() && max > 0;
       ++it, i = 0) {
    for (; i < it->count && max > 0; ++i, --max) {
      Packed p = UnpackAt(it->data.get(), it->capacity, i);
      Event& e = out->emplace_back();
      e.cursor = it->first + i;
      e.kind = p.kind;
      e.user_id = std::string(p.user);
      e.connection_id = std::string(p.connection);
      e.device_id = std::string(p.device);
      e.node_id = std::string(p.node != SharedStrings::kNone ? strings_.Get(p.node) : p.node_bytes);
      e.reason =
          std::string(p.reason != SharedStrings::kNone ? strings_.Get(p.reason) : p.reason_bytes);
      e.at = p.at;
    }
  }
  return Read::kOk;
}

uint64_t Feed::last() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

uint64_t Feed::first() const {
  absl::MutexLock lock(&mu_);
  return FirstLocked();
}

bool Feed::Wait(Waiter* waiter, uint64_t after) {
  absl::MutexLock lock(&mu_);
  if (after < last_) return false;
  waiters_[waiter] = after;
  return true;
}

void Feed::Cancel(Waiter* waiter) {
  absl::MutexLock lock(&mu_);
  waiters_.erase(waiter);
}

void Feed::WakeAll() {
  absl::MutexLock lock(&mu_);
  WakeLocked([](uint64_t) { return true; });
}

MemoryPresence::MemoryPresence(std::string node_id, absl::Duration offline_delay, Feed* feed,
                               Clock* clock)
    : node_id_(std::move(node_id)), feed_(feed), clock_(clock), state_(offline_delay) {}

void MemoryPresence::Emit(std::vector<Event> events) {
  if (events.empty()) return;
  for (Event& e : events) e.cursor = ++cursor_;
  GlobalMetrics().presence_events.fetch_add(events.size(), std::memory_order_relaxed);
  feed_->Publish(std::move(events));
}

void MemoryPresence::OnAdd(const Connection& connection) {
  std::vector<Event> events;
  absl::MutexLock lock(&mu_);
  state_.Connected(node_id_, connection.info(), clock_->Now(), &events);
  Emit(std::move(events));
}

void MemoryPresence::OnRemove(const Connection& connection, std::string_view reason) {
  std::vector<Event> events;
  absl::MutexLock lock(&mu_);
  state_.Disconnected(node_id_, connection.info().connection_id, reason, clock_->Now(), &events);
  Emit(std::move(events));
}

void MemoryPresence::Tick() {
  {
    std::vector<Event> events;
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_->Now();
    if (state_.NextDue() <= now) {
      state_.Expire(now, &events);
      Emit(std::move(events));
    }
  }
  feed_->Trim();
}

void MemoryPresence::ReadLog(uint64_t after, size_t,
                             absl::AnyInvocable<void(absl::StatusOr<Page>)> done) {
  // The feed is the whole log: what it no longer holds is gone.
  Page page;
  page.resync = true;
  page.resync_from = feed_->first() - 1;
  if (after > feed_->last()) page.resync_from = feed_->last();
  done(std::move(page));
}

}  // namespace push::presence
