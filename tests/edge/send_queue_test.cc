#include "edge/send_queue.h"

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/delivery/message.h"
#include "gtest/gtest.h"

namespace push::edge {
namespace {

constexpr size_t kAll = std::numeric_limits<size_t>::max();
using WsFrame = std::pair<int, std::string>;  // opcode, payload

// Parses `wire` as a strict client would: FIN set, no RSV bits, unmasked, minimal length
// encoding, nothing left over. `ends` gets each frame's end offset in `wire`.
::testing::AssertionResult Parse(const std::string& wire, std::vector<WsFrame>* frames,
                                 std::vector<size_t>* ends = nullptr) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(wire[i]); };
  for (size_t i = 0; i < wire.size();) {
    if (wire.size() - i < 2) return ::testing::AssertionFailure() << "cut header at " << i;
    if ((byte(i) & 0xF0) != 0x80) return ::testing::AssertionFailure() << "FIN/RSV at " << i;
    if (byte(i + 1) & 0x80) return ::testing::AssertionFailure() << "masked frame at " << i;
    uint64_t len = byte(i + 1) & 0x7F;
    size_t extra = len == 126 ? 2 : len == 127 ? 8 : 0;
    if (wire.size() - i < 2 + extra) return ::testing::AssertionFailure() << "cut length";
    if (extra > 0) len = 0;
    for (size_t k = 0; k < extra; ++k) len = len << 8 | byte(i + 2 + k);
    if ((extra == 2 && len < 126) || (extra == 8 && len <= 0xFFFF)) {
      return ::testing::AssertionFailure() << "non-minimal length " << len << " at " << i;
    }
    size_t start = i + 2 + extra;
    if (wire.size() - start < len) return ::testing::AssertionFailure() << "cut payload";
    frames->emplace_back(byte(i) & 0x0F, wire.substr(start, len));
    i = start + len;
    if (ends != nullptr) ends->push_back(i);
  }
  return ::testing::AssertionSuccess();
}

const void* Id(const OutFrame& f) {
  return f.message ? static_cast<const void*>(f.message.get()) : f.text.get();
}

OutFrame Text(std::string s, Opcode opcode = Opcode::kText) {
  OutFrame f{nullptr, std::make_shared<const std::string>(std::move(s))};
  f.opcode = opcode;
  return f;
}

OutFrame Msg(uint64_t seq, std::string data) {
  OutFrame f;
  f.message = MakeMessage(seq, absl::StrCat("m", seq), absl::FromUnixMillis(1700000000000),
                          absl::InfiniteFuture(), data);
  return f;
}

// A message whose /ws frame (header + data + "}") is exactly `frame_size` bytes.
OutFrame MsgOfFrameSize(uint64_t seq, size_t frame_size) {
  size_t overhead = Msg(seq, "").message->FrameSize();
  return Msg(seq, std::string(frame_size - overhead, 'x'));
}

// Frames around the 7/16-bit length boundaries, empty payloads and control frames included.
std::vector<OutFrame> SmallFrames() {
  std::vector<OutFrame> frames = {Msg(1, "{\"a\":1}"), Text(""), Msg(2, "")};
  frames.push_back(Text("p", Opcode::kPing));
  frames.push_back(Text("", Opcode::kPong));
  for (size_t n : {125, 126}) frames.push_back(MsgOfFrameSize(n, n));
  for (size_t n : {125, 126, 300}) frames.push_back(Text(std::string(n, 't')));
  frames.push_back(Msg(5, std::string(300, 'y')));
  return frames;
}

struct Written {
  std::string wire;
  std::vector<const void*> sent;  // the frames reported sent, in order
  // Per write: the iovecs Gather filled, the wire offset after the write, the frames reported
  // sent so far, and started().
  struct Write {
    size_t gathered, end, sent;
    bool started;
  };
  std::vector<Write> writes;
};

// Writes all that is queued as a socket would: write i takes at most `chunk(i)` of the bytes
// Gather offered (`chunk` runs before each Gather and may push or drop frames). Checks bytes()
// after every write.
using Chunk = std::function<size_t(size_t)>;
const Chunk kWhole = [](size_t) { return kAll; };
Written Drain(SendQueue& q, bool compat, const Chunk& chunk = kWhole,
              size_t max_iov = SendQueue::kMaxIovecs) {
  Written w;
  std::vector<iovec> iov(max_iov + 4, iovec{nullptr, 7});  // an overrun fails, not corrupts
  auto untouched = [](const iovec& v) { return v.iov_base == nullptr && v.iov_len == 7; };
  for (size_t call = 0; !q.empty(); ++call) {
    size_t budget = chunk(call), n = 0;
    size_t count = q.Gather(iov.data(), max_iov);
    if (q.empty()) break;
    if (count == 0 || count > max_iov ||
        !std::all_of(iov.begin() + max_iov, iov.end(), untouched)) {
      ADD_FAILURE() << "Gather: " << count << " of " << max_iov << " for " << q.size() << " frames";
      break;
    }
    for (size_t k = 0; k < count && n < budget; ++k) {
      EXPECT_GT(iov[k].iov_len, 0u);
      size_t take = std::min(iov[k].iov_len, budget - n);
      w.wire.append(static_cast<const char*>(iov[k].iov_base), take);
      n += take;
    }
    uint64_t expected_bytes = q.bytes();
    q.Consume(n, [&](const OutFrame& f) {
      w.sent.push_back(Id(f));
      expected_bytes -= f.Size(compat);
    });
    EXPECT_EQ(q.bytes(), expected_bytes);
    w.writes.push_back({count, w.wire.size(), w.sent.size(), q.started()});
  }
  return w;
}

// Checks that a client reading `w.wire` gets exactly `frames`, and that each frame was reported
// sent, in order, by the very write that finished it.
void ExpectFrames(const Written& w, const std::vector<OutFrame>& frames, bool compat) {
  std::vector<WsFrame> got, want;
  std::vector<size_t> ends;
  std::vector<const void*> ids;
  ASSERT_TRUE(Parse(w.wire, &got, &ends));
  for (const OutFrame& f : frames) {
    want.push_back(f.message ? WsFrame(0x1, compat ? *f.message->payload : f.message->Frame())
                             : WsFrame(static_cast<int>(f.opcode), *f.text));
    ids.push_back(Id(f));
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(w.sent, ids);
  for (const Written::Write& write : w.writes) {
    size_t done = std::upper_bound(ends.begin(), ends.end(), write.end) - ends.begin();
    EXPECT_EQ(write.sent, done) << "after writing " << write.end << " bytes";
    EXPECT_EQ(write.started, write.end > (done == 0 ? 0 : ends[done - 1]));
  }
}

// Pushes `frames`, checks bytes(), and drains them with `chunk` writes.
Written PushAndDrain(SendQueue& q, const std::vector<OutFrame>& frames, bool compat,
                     const Chunk& chunk = kWhole, size_t max_iov = SendQueue::kMaxIovecs) {
  uint64_t sum = 0;
  for (const OutFrame& f : frames) {
    q.Push(f);
    sum += f.Size(compat);
  }
  EXPECT_EQ(q.bytes(), sum);
  EXPECT_EQ(q.size(), frames.size());
  Written w = Drain(q, compat, chunk, max_iov);
  ExpectFrames(w, frames, compat);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
  return w;
}

TEST(SendQueueTest, EncodeHeaderUsesTheShortestLength) {
  const std::vector<std::tuple<Opcode, uint64_t, std::vector<uint8_t>>> cases = {
      {Opcode::kText, 0, {0x81, 0}},
      {Opcode::kPing, 125, {0x89, 125}},
      {Opcode::kPong, 126, {0x8A, 126, 0, 126}},
      {Opcode::kText, 65535, {0x81, 126, 0xFF, 0xFF}},
      {Opcode::kText, 65536, {0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
      {Opcode::kText, (uint64_t{1} << 32) + 5, {0x81, 127, 0, 0, 0, 1, 0, 0, 0, 5}}};
  for (const auto& [opcode, size, header] : cases) {
    uint8_t out[10];
    size_t n = SendQueue::EncodeHeader(opcode, size, out);
    EXPECT_EQ(std::vector<uint8_t>(out, out + n), header) << "size " << size;
  }
}

TEST(SendQueueTest, SendsEnvelopesOrInCompatModeBareData) {
  for (bool compat : {false, true}) {
    SendQueue q(compat);
    EXPECT_EQ(q.Gather(nullptr, 0), 0u);
    Written w = PushAndDrain(q, SmallFrames(), compat);  // checks the frames
    EXPECT_EQ(w.writes.size(), 1u);                      // one write for everything queued
    if (compat) {
      EXPECT_EQ(w.wire.substr(0, 11), std::string("\x81\x07{\"a\":1}\x81\x00", 11));
    }
  }
}

TEST(SendQueueTest, LengthsAroundThe16And64BitBoundaries) {
  for (bool compat : {false, true}) {
    SendQueue q(compat);
    // Payloads of 65535 and 65536 bytes: the /ws envelope, or in compat mode the bare data.
    auto msg = [&](uint64_t seq, size_t n) {
      return compat ? Msg(seq, std::string(n, 'x')) : MsgOfFrameSize(seq, n);
    };
    std::vector<OutFrame> frames = {msg(1, 65535), msg(2, 65536), Text(std::string(65535, 'a')),
                                    Text(std::string(65536, 'b'))};
    Written one = PushAndDrain(q, frames, compat);
    EXPECT_EQ(one.wire.substr(0, 4), "\x81\x7E\xFF\xFF");
    EXPECT_EQ(one.wire.substr(4 + 65535, 10), std::string("\x81\x7F\0\0\0\0\0\x01\0\0", 10));
    // Uneven writes that cut headers, payloads and frame boundaries give the same bytes.
    const size_t chunks[] = {1, 2, 3, 7, 4099, 9, 65537, 1, 10, 65530};
    Written cut = PushAndDrain(q, frames, compat, [&](size_t i) { return chunks[i % 10]; });
    EXPECT_EQ(cut.wire, one.wire);
  }
}

TEST(SendQueueTest, EverySplitPointGivesTheSameStream) {
  for (bool compat : {false, true}) {
    SendQueue q(compat);
    const std::vector<OutFrame> frames = SmallFrames();
    const std::string wire = PushAndDrain(q, frames, compat).wire;
    for (size_t k = 1; k < wire.size(); ++k) {
      Written two = PushAndDrain(q, frames, compat, [k](size_t i) { return i == 0 ? k : kAll; });
      ASSERT_EQ(two.wire, wire) << "split at " << k;
      ASSERT_EQ(two.writes.size(), 2u);
    }
    Written bytewise = PushAndDrain(q, frames, compat, [](size_t) { return 1; });
    EXPECT_EQ(bytewise.wire, wire);
  }
}

TEST(SendQueueTest, GatherRespectsTheIovecLimit) {
  SendQueue q(/*compat=*/false);
  std::vector<OutFrame> frames;
  for (uint64_t seq = 1; seq <= 70; ++seq) frames.push_back(Msg(seq, std::to_string(seq * 1000)));
  const std::string wire = PushAndDrain(q, frames, false).wire;
  for (size_t max : {4, 5, 7, 64, 127}) {
    EXPECT_EQ(PushAndDrain(q, frames, false, kWhole, max).wire, wire) << "max " << max;
  }

  // A message takes four entries: 128 hold 32 frames. All but 3 bytes of them written, the next
  // Gather resumes inside the 32nd: its data tail "00" and "}", then 31 whole frames.
  std::vector<WsFrame> parsed;
  std::vector<size_t> ends;
  ASSERT_TRUE(Parse(wire, &parsed, &ends));
  Written w =
      PushAndDrain(q, frames, false, [&](size_t i) { return i == 0 ? ends[31] - 3 : kAll; });
  ASSERT_EQ(w.writes.size(), 3u);
  EXPECT_EQ(w.writes[0].gathered, SendQueue::kMaxIovecs);
  EXPECT_EQ(w.writes[0].sent, 31u);
  EXPECT_EQ(w.writes[1].gathered, 2 + 31 * 4u);
  EXPECT_EQ(w.wire.substr(ends[31] - 3, 3), "00}");
  EXPECT_EQ(w.writes[2].gathered, (70 - 63) * 4u);
}

TEST(SendQueueTest, PushWhileAFrameIsPartlyWritten) {
  SendQueue q(/*compat=*/false);
  std::vector<OutFrame> frames;
  for (int i = 0; i < 10; ++i) frames.push_back(Text(std::string(130 + i, 'a' + i)));
  size_t ten = PushAndDrain(q, frames, false).wire.size();
  for (int i = 0; i < 6; ++i) frames.push_back(Msg(100 + i, std::string(200, 'q')));
  // First write: nine frames and 3 bytes of the tenth's 4-byte header (popping nine compacts
  // the queue, moving the started frame). Then six more are pushed before the next Gather.
  Chunk chunk = [&](size_t i) {
    if (i == 1) {
      for (int k = 10; k < 16; ++k) q.Push(frames[k]);
    }
    return i == 0 ? ten - (4 + 139) + 3 : i % 2 ? 5 : 333;
  };
  for (int i = 0; i < 10; ++i) q.Push(frames[i]);
  Written w = Drain(q, false, chunk);
  ExpectFrames(w, frames, false);
  EXPECT_EQ(w.writes[0].sent, 9u);
}

// A ping or pong goes ahead of every frame not yet started, but never into the middle of the one
// partly written.
TEST(SendQueueTest, PushFrontGoesAfterAStartedFrameAndBeforeTheRest) {
  SendQueue q(/*compat=*/false);
  std::vector<OutFrame> frames = {Msg(1, std::string(300, 'a')), Msg(2, "2"), Msg(3, "3")};
  OutFrame ping = Text("p1", Opcode::kPing);
  OutFrame pong = Text("p2", Opcode::kPong);
  for (const OutFrame& f : frames) q.Push(f);
  q.PushFront(ping);  // nothing started: first
  Chunk chunk = [&](size_t i) {
    if (i == 1) q.PushFront(pong);  // after the 10 bytes below: message 1 has started
    return i == 0 ? size_t{4 + 10} : kAll;
  };
  Written w = Drain(q, false, chunk);
  ExpectFrames(w, {ping, frames[0], pong, frames[1], frames[2]}, false);
  EXPECT_EQ(q.bytes(), 0u);
}

// A peer that pings faster than it reads: each new pong replaces the one still waiting (RFC 6455
// 5.5.3), so the queue holds one pong, the latest, however many pings came; pings are never
// merged, a pong partly written is finished, and the 101 response stays first.
TEST(SendQueueTest, APongReplacesAPongStillWaitingAheadOfTheRest) {
  SendQueue q(/*compat=*/false);
  OutFrame upgrade = Text("HTTP/1.1 101 Switching Protocols\r\n\r\n", Opcode::kRaw);
  OutFrame message = Msg(1, std::string(300, 'a'));
  EXPECT_EQ(q.PushFront(upgrade), static_cast<int64_t>(upgrade.Size(false)));
  q.Push(message);
  std::vector<OutFrame> pongs;
  for (int i = 0; i < 1000; ++i) pongs.push_back(Text("pong " + std::to_string(i), Opcode::kPong));
  EXPECT_EQ(q.PushFront(pongs[0]), 6);
  for (int i = 1; i < 1000; ++i) {
    const int64_t grew =
        static_cast<int64_t>(pongs[i].Size(false)) - static_cast<int64_t>(pongs[i - 1].Size(false));
    EXPECT_EQ(q.PushFront(pongs[i]), grew);
  }
  OutFrame ping = Text("ping", Opcode::kPing);
  EXPECT_EQ(q.PushFront(ping), 4);
  EXPECT_EQ(q.size(), 4u);  // the response, the ping, the latest pong, the message
  EXPECT_EQ(q.bytes(),
            upgrade.Size(false) + ping.Size(false) + pongs[999].Size(false) + message.Size(false));
  // The 101 response goes whole, then the ping and 3 bytes of the pong: a newer pong cannot
  // replace that one any more, so it goes after it, ahead of the message.
  OutFrame last = Text("last", Opcode::kPong);
  Chunk chunk = [&](size_t i) {
    if (i == 1) EXPECT_EQ(q.PushFront(last), 4);
    return i == 0 ? upgrade.Size(false) + 2 + 4 + 3 : kAll;
  };
  Written w = Drain(q, false, chunk);
  ASSERT_GT(w.wire.size(), upgrade.Size(false));
  EXPECT_EQ(w.wire.substr(0, upgrade.Size(false)), *upgrade.text);
  w.wire.erase(0, upgrade.Size(false));
  w.sent.erase(w.sent.begin());
  for (Written::Write& write : w.writes) {
    write.end -= std::min(write.end, upgrade.Size(false));
    write.sent -= std::min<size_t>(write.sent, 1);
  }
  w.writes.erase(w.writes.begin());
  ExpectFrames(w, {ping, pongs[999], last, message}, false);
  EXPECT_EQ(q.bytes(), 0u);
}

TEST(SendQueueTest, DropBackKeepsAStartedFrame) {
  for (bool compat : {false, true}) {
    SendQueue q(compat);
    std::vector<OutFrame> frames = SmallFrames();
    for (const OutFrame& f : frames) q.Push(f);
    uint64_t total = q.bytes(), first = frames[0].Size(compat), second = frames[1].Size(compat);
    EXPECT_EQ(q.DropBack(frames.size() + 1), 0u);  // keeping more than queued drops nothing
    EXPECT_EQ(q.DropBack(2), total - first - second);
    EXPECT_EQ(q.size(), 2u);
    EXPECT_EQ(q.bytes(), first + second);
    EXPECT_EQ(q.DropBack(0), first + second);  // nothing started: all go
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.bytes(), 0u);

    // 5 bytes of the first frame written, then DropBack(0) and one more frame: the client gets
    // the first frame whole, then the new one.
    for (const OutFrame& f : frames) q.Push(f);
    OutFrame after = Text("after");
    Written w = Drain(q, compat, [&](size_t i) {
      if (i == 1) {
        EXPECT_EQ(q.DropBack(0), total - first);
        EXPECT_EQ(q.size(), 1u);
        EXPECT_EQ(q.bytes(), first);
        q.Push(after);
      }
      return i == 0 ? 5 : kAll;
    });
    ExpectFrames(w, {frames[0], after}, compat);
  }
}

TEST(SendQueueTest, PopFrontFinishesTheFirstFrame) {
  SendQueue q(/*compat=*/false);
  std::vector<OutFrame> frames = {Msg(1, "\"one\""), Text("two"), Msg(2, "\"three\"")};
  for (const OutFrame& f : frames) q.Push(f);
  EXPECT_EQ(Id(q.front()), Id(frames[0]));
  std::vector<const void*> sent;
  auto record = [&](const OutFrame& f) { sent.push_back(Id(f)); };
  q.PopFront(record);  // TLS: Beast wrote the whole frame
  EXPECT_EQ(sent, std::vector<const void*>{Id(frames[0])});
  EXPECT_EQ(q.bytes(), frames[1].Size(false) + frames[2].Size(false));
  EXPECT_EQ(Id(q.front()), Id(frames[1]));

  q.Consume(1, record);  // partly written, then finished by PopFront
  q.PopFront(record);
  EXPECT_EQ(sent, (std::vector<const void*>{Id(frames[0]), Id(frames[1])}));
  EXPECT_FALSE(q.started());
  ExpectFrames(Drain(q, false), {frames[2]}, false);
}

}  // namespace
}  // namespace push::edge
