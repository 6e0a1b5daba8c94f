// A differential test of FrameReader against Boost.Beast's websocket::stream, which read the
// plain connections' client frames before FrameReader did (Boost 1.81: read_message_max(4096),
// auto_fragment(false), no permessage-deflate, server role). Client byte streams are generated
// from a fixed seed, mostly valid with occasional faults; each is read by FrameReader (whole and
// in pieces) and by a server-role Beast stream over Beast's test stream, and the two event
// sequences are compared: messages, ping and pong payloads, and the end (the peer's close with
// its code and reason, a failure with the close code the server sends, or the end of the bytes).
//
// The differences allowed are listed in `Difference` below, each with why FrameReader does what
// it does; each is counted, and the test checks that the seed exercises every one of them. The
// FrameReaderBeastKnownDifferences tests show each with a minimal byte string.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/detail/utf8_checker.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "common/base/close.h"
#include "edge/frame_reader.h"

namespace push::edge {
namespace {

namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using Kind = FrameReader::Event::Kind;

// One thing a reader reported. The last event of a run is always its end: kClose, kFail or kEof.
struct Ev {
  enum class K : uint8_t { kText, kBinary, kPing, kPong, kClose, kFail, kEof };
  explicit Ev(K k, std::string d = {}, uint16_t c = 0, std::string w = {})
      : kind(k), data(std::move(d)), code(c), what(std::move(w)) {}

  K kind;
  std::string data;  // the message, the ping's or pong's payload, the close reason
  uint16_t code = 0;
  std::string what;  // FrameReader's words for a failure (not compared)

  bool operator==(const Ev& o) const { return kind == o.kind && data == o.data && code == o.code; }
};

std::string Hex(const std::string& bytes, size_t max = 64) {
  std::string out;
  char buf[4];
  for (size_t i = 0; i < bytes.size() && i < max; ++i) {
    std::snprintf(buf, sizeof(buf), "%02x ", static_cast<unsigned char>(bytes[i]));
    out += buf;
  }
  if (bytes.size() > max) out += "... (" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

std::string Show(const Ev& e) {
  switch (e.kind) {
    case Ev::K::kText:
      return "text[" + Hex(e.data, 16) + "]";
    case Ev::K::kBinary:
      return "binary[" + Hex(e.data, 16) + "]";
    case Ev::K::kPing:
      return "ping[" + Hex(e.data, 16) + "]";
    case Ev::K::kPong:
      return "pong[" + Hex(e.data, 16) + "]";
    case Ev::K::kClose:
      return "close " + std::to_string(e.code) + " [" + Hex(e.data, 16) + "]";
    case Ev::K::kFail:
      return "fail " + std::to_string(e.code) + (e.what.empty() ? "" : " (" + e.what + ")");
    case Ev::K::kEof:
      return "eof";
  }
  return "?";
}

std::string Show(const std::vector<Ev>& events) {
  std::string out;
  for (const Ev& e : events) out += (out.empty() ? "" : ", ") + Show(e);
  return out;
}

// FrameReader, fed `wire` in pieces of the sizes `pieces` says (the last one repeated until the
// bytes run out), each piece a copy (the reader unmasks in place).
std::vector<Ev> ReadOurs(const std::string& wire, const std::vector<size_t>& pieces) {
  FrameReader reader(kMaxClientMessageBytes);
  std::vector<Ev> events;
  auto sink = [&](const FrameReader::Event& e) {
    switch (e.kind) {
      case Kind::kText:
        events.emplace_back(Ev::K::kText, std::string(e.payload));
        break;
      case Kind::kBinary:
        events.emplace_back(Ev::K::kBinary, std::string(e.payload));
        break;
      case Kind::kPing:
        events.emplace_back(Ev::K::kPing, std::string(e.payload));
        break;
      case Kind::kPong:
        events.emplace_back(Ev::K::kPong, std::string(e.payload));
        break;
      case Kind::kClose:
        events.emplace_back(Ev::K::kClose, std::string(e.payload), e.code);
        break;
      case Kind::kFail:
        events.emplace_back(Ev::K::kFail, "", e.code, e.what);
        break;
    }
  };
  size_t at = 0;
  size_t k = 0;
  std::vector<uint8_t> piece;
  while (at < wire.size() && !reader.done()) {
    size_t n = std::min(wire.size() - at, pieces[std::min(k++, pieces.size() - 1)]);
    piece.assign(wire.begin() + static_cast<std::ptrdiff_t>(at),
                 wire.begin() + static_cast<std::ptrdiff_t>(at + n));
    reader.Feed(piece.data(), piece.size(), sink);
    at += n;
  }
  if (!reader.done()) events.emplace_back(Ev::K::kEof);
  return events;
}

constexpr char kUpgradeRequest[] =
    "GET / HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

struct BeastRun {
  std::vector<Ev> events;
  std::vector<std::string> pongs_sent;  // the pongs Beast wrote to the client
  int close_sent = -1;                  // the code of the close frame it wrote (0: no code)
  std::string trouble;                  // what was wrong with what it wrote, if anything
};

// Beast: a server-role websocket::stream over a test stream whose input holds the upgrade
// request, then `wire`, then the end; its output goes to `client`, parsed at the end. With
// `read_size`, each read of the test stream returns at most that many bytes.
BeastRun ReadBeast(const std::string& wire, size_t read_size = 0) {
  BeastRun run;
  boost::asio::io_context ioc;
  beast::test::stream client(ioc);
  websocket::stream<beast::test::stream> ws(ioc, kUpgradeRequest);
  ws.next_layer().connect(client);
  ws.read_message_max(kMaxClientMessageBytes);
  ws.auto_fragment(false);
  std::string close_reason_seen;
  bool close_seen = false;
  ws.control_callback([&](websocket::frame_type kind, beast::string_view payload) {
    switch (kind) {
      case websocket::frame_type::ping:
        run.events.emplace_back(Ev::K::kPing, std::string(payload));
        break;
      case websocket::frame_type::pong:
        run.events.emplace_back(Ev::K::kPong, std::string(payload));
        break;
      case websocket::frame_type::close:
        close_seen = true;
        close_reason_seen = std::string(payload);
        break;
    }
  });
  beast::error_code ec;
  ws.accept(ec);
  if (ec) {
    run.trouble = "accept: " + ec.message();
    return run;
  }
  ws.next_layer().append(beast::string_view(wire.data(), wire.size()));
  if (read_size != 0) ws.next_layer().read_size(read_size);
  ws.next_layer().close_remote();
  beast::flat_buffer buffer;
  for (;;) {
    ws.read(buffer, ec);
    if (ec) break;
    run.events.emplace_back(ws.got_text() ? Ev::K::kText : Ev::K::kBinary,
                            beast::buffers_to_string(buffer.data()));
    buffer.consume(buffer.size());
  }

  // What Beast wrote to the client: the 101 response, a pong for each ping, maybe a close frame.
  const std::string out(client.str());
  size_t at = out.find("\r\n\r\n");
  if (out.rfind("HTTP/1.1 101", 0) != 0 || at == std::string::npos) {
    run.trouble = "no 101 response";
    return run;
  }
  at += 4;
  while (at < out.size()) {
    if (out.size() - at < 2) {
      run.trouble = "a partial frame";
      break;
    }
    const uint8_t b0 = static_cast<uint8_t>(out[at]);
    uint64_t length = static_cast<uint8_t>(out[at + 1]) & 0x7f;
    at += 2;
    if (length >= 126) {  // Beast's control frames are shorter; anything else is trouble
      run.trouble = "a long frame";
      break;
    }
    if (out.size() - at < length) {
      run.trouble = "a partial frame";
      break;
    }
    std::string payload = out.substr(at, length);
    at += length;
    if (b0 == 0x8a) {
      run.pongs_sent.push_back(payload);
    } else if (b0 == 0x88 && run.close_sent < 0 && (payload.empty() || payload.size() == 2)) {
      run.close_sent = payload.empty() ? 0
                                       : (static_cast<uint8_t>(payload[0]) << 8) |
                                             static_cast<uint8_t>(payload[1]);
    } else {
      run.trouble = "an unexpected frame " + Hex(payload);
      break;
    }
  }

  if (ec == websocket::error::closed) {
    const uint16_t code = ws.reason().code;
    const std::string reason(ws.reason().reason.data(), ws.reason().reason.size());
    run.events.emplace_back(Ev::K::kClose, reason, code);
    if (!close_seen || close_reason_seen != reason) {
      run.trouble = "close without its control_callback";
    }
    // Beast echoes the peer's code, 1000 when the peer sent none.
    if (run.close_sent != (code == 0 ? 1000 : code)) run.trouble = "a close echo that differs";
  } else if (ec == boost::asio::error::eof) {
    run.events.emplace_back(Ev::K::kEof);
    if (run.close_sent >= 0) run.trouble = "a close frame before the end of the bytes";
  } else {
    run.events.emplace_back(Ev::K::kFail, "",
                            static_cast<uint16_t>(run.close_sent < 0 ? 0 : run.close_sent));
    if (run.close_sent <= 0) run.trouble = "failed (" + ec.message() + ") without a close code";
  }
  // Beast answers each ping with a pong of the same payload.
  std::vector<std::string> pings;
  for (const Ev& e : run.events) {
    if (e.kind == Ev::K::kPing) pings.push_back(e.data);
  }
  if (pings != run.pongs_sent) run.trouble = "pongs that are not the pings' payloads";
  return run;
}

// The differences between the two readers that are known and explained, each counted. Anything
// else fails the test.
enum class Difference : uint8_t {
  kNone,
  // Deliberate: a close code of 5000 or more. RFC 6455 7.4.2 defines codes up to 4999 only;
  // FrameReader fails with 1002 (IsValidCloseCode), Beast's is_valid_close_code takes any code
  // from 3000 up, and echoes it.
  kCloseCodeAbove4999,
  // A close frame whose reason is not UTF-8: FrameReader fails with 1007, Beast with 1002 (its
  // read_close reports bad_close_payload and read_some fails every close frame problem with
  // protocol_error). Both fail the connection as RFC 6455 8.1 requires; ours is the code 7.4.1
  // gives to data that is not consistent with its type (not UTF-8). Ours.
  kCloseReasonNotUtf8,
  // A 64-bit length whose most significant bit is set: FrameReader fails with 1002 (RFC 6455
  // 5.2: "the most significant bit MUST be 0"), Beast does not check that bit and fails with 1009
  // because the length passes read_message_max. Both fail; ours names the violation. Ours.
  kLengthTopBitSet,
  // A Beast bug: it checks that a text message does not end inside a UTF-8 sequence only when
  // the message's final frame has a payload. A fragmented text message whose last non-empty
  // fragment ends inside a sequence, followed by an empty final fragment, is delivered as text
  // that is not UTF-8 (and the unfinished sequence carries over into the next text message).
  // FrameReader fails it with 1007, as RFC 6455 8.1 requires. Ours.
  kBeastEmptyFinalFragment,
  kUnexplained,
};
constexpr int kDifferenceCount = static_cast<int>(Difference::kUnexplained) + 1;
constexpr const char* kDifferenceNames[kDifferenceCount] = {
    "same",
    "close code above 4999",
    "close reason not UTF-8 (1007 vs 1002)",
    "64-bit length top bit (1002 vs 1009)",
    "Beast: empty final fragment skips the UTF-8 end check",
    "UNEXPLAINED",
};

// Classifies the two runs by their first difference (what follows it may differ as a result).
Difference Classify(const std::vector<Ev>& ours, const std::vector<Ev>& theirs) {
  size_t i = 0;
  while (i < ours.size() && i < theirs.size() && ours[i] == theirs[i]) ++i;
  if (i == ours.size() && i == theirs.size()) return Difference::kNone;
  if (i == ours.size() || i == theirs.size()) return Difference::kUnexplained;
  const Ev& o = ours[i];
  const Ev& t = theirs[i];
  const std::string what = o.what;
  if (o.kind == Ev::K::kFail && what == "invalid close code" && t.kind == Ev::K::kClose &&
      t.code > 4999) {
    return Difference::kCloseCodeAbove4999;
  }
  if (o.kind == Ev::K::kFail && o.code == 1007 && what == "close reason that is not UTF-8" &&
      t.kind == Ev::K::kFail && t.code == 1002) {
    return Difference::kCloseReasonNotUtf8;
  }
  if (o.kind == Ev::K::kFail && what == "frame length over 2^63" && t.kind == Ev::K::kFail &&
      t.code == 1009) {
    return Difference::kLengthTopBitSet;
  }
  if (t.kind == Ev::K::kText && o.kind == Ev::K::kFail && o.code == 1007 &&
      what == "text that is not UTF-8") {
    // Beast delivered text its own checker finds valid but for an unfinished sequence at the
    // end: the check it skipped. (Its checker starts clean here: an earlier message that left
    // it unfinished would have been the first difference.)
    websocket::detail::utf8_checker checker;
    const bool unfinished =
        checker.write(reinterpret_cast<const uint8_t*>(t.data.data()), t.data.size()) &&
        !checker.finish();
    if (unfinished) return Difference::kBeastEmptyFinalFragment;
  }
  return Difference::kUnexplained;
}

// ---- The client streams ------------------------------------------------------------------------

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  // A client byte stream: a few messages (some fragmented, with control frames between the
  // fragments), pings and pongs, usually a close frame at the end; sometimes faults.
  std::string Case() {
    frames_.clear();
    const uint32_t items = 1 + Below(6);
    for (uint32_t i = 0; i < items; ++i) {
      if (Percent(70)) {
        Message();
      } else {
        frames_.push_back(Control(Percent(50) ? 0x9 : 0xa));
      }
    }
    if (Percent(70)) frames_.push_back(CloseFrame());
    if (Percent(15)) Message();  // after the close: neither reader reads it
    if (Percent(25)) FrameFault();
    if (Percent(5)) FrameFault();
    std::string wire;
    for (const Frame& f : frames_) wire += Encode(f);
    if (Percent(4) && !wire.empty()) wire.resize(Below(static_cast<uint32_t>(wire.size())));
    if (Percent(3) && !wire.empty()) {
      wire[Below(static_cast<uint32_t>(wire.size()))] ^= static_cast<char>(1 + Below(255));
    }
    if (Percent(3)) wire += Bytes(Below(40));
    return wire;
  }

  // Piece sizes for feeding a stream to FrameReader.
  std::vector<size_t> Pieces() {
    std::vector<size_t> pieces;
    const uint32_t style = Below(4);
    if (style == 0) return {1};
    for (int i = 0; i < 64; ++i) {
      pieces.push_back(style == 1 ? 1 + Below(8) : style == 2 ? 1 + Below(200) : 1 + Below(3000));
    }
    return pieces;
  }

  uint32_t Below(uint32_t n) { return n == 0 ? 0 : static_cast<uint32_t>(rng_() % n); }
  bool Percent(uint32_t p) { return Below(100) < p; }

 private:
  struct Frame {
    uint8_t op;
    std::string payload;
    bool fin = true;
    uint8_t rsv = 0;
    bool masked = true;
    // How the length is written: the shortest form; 16 or 64 bits when shorter would do; 64
    // bits with the top bit set; 64 bits saying 65536 bytes or more (the payload follows as it
    // is).
    enum class Length : uint8_t { kShortest, k16, k64, k64TopBit, k64Huge };
    Length length = Length::kShortest;
    uint32_t key = 0;
    // The length the header says, when not the payload's (the edges of the shortest forms).
    int64_t declared = -1;
  };

  Frame Make(uint8_t op, std::string payload, bool fin = true) {
    Frame f{op, std::move(payload), fin};
    f.key = Percent(5) ? 0 : static_cast<uint32_t>(rng_());
    return f;
  }

  static std::string Encode(const Frame& f) {
    std::string out;
    out.push_back(static_cast<char>((f.fin ? 0x80 : 0) | (f.rsv << 4) | (f.op & 0x0f)));
    const uint8_t mask_bit = f.masked ? 0x80 : 0;
    const uint64_t n =
        f.declared >= 0 ? static_cast<uint64_t>(f.declared) : uint64_t{f.payload.size()};
    auto length = f.length;
    if (length == Frame::Length::kShortest) {
      length = n < 126     ? Frame::Length::kShortest
               : n < 65536 ? Frame::Length::k16
                           : Frame::Length::k64;
    }
    switch (length) {
      case Frame::Length::kShortest:
        out.push_back(static_cast<char>(mask_bit | n));
        break;
      case Frame::Length::k16:
        out.push_back(static_cast<char>(mask_bit | 126));
        out.push_back(static_cast<char>(n >> 8));
        out.push_back(static_cast<char>(n & 0xff));
        break;
      case Frame::Length::k64:
      case Frame::Length::k64TopBit:
      case Frame::Length::k64Huge: {
        out.push_back(static_cast<char>(mask_bit | 127));
        uint64_t v = n;
        if (length == Frame::Length::k64TopBit) v |= uint64_t{1} << 63;
        if (length == Frame::Length::k64Huge) v = 65536 + (uint64_t{f.key} << 16);
        for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
        break;
      }
    }
    if (!f.masked) return out + f.payload;
    const uint8_t key[4] = {static_cast<uint8_t>(f.key >> 24), static_cast<uint8_t>(f.key >> 16),
                            static_cast<uint8_t>(f.key >> 8), static_cast<uint8_t>(f.key)};
    out.append(key, key + 4);
    for (size_t i = 0; i < f.payload.size(); ++i) {
      out.push_back(static_cast<char>(f.payload[i] ^ key[i & 3]));
    }
    return out;
  }

  std::string Bytes(uint32_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng_());
    return s;
  }

  void AppendCodePoint(std::string& s, uint32_t cp) {
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      s.push_back(static_cast<char>(0xc0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      s.push_back(static_cast<char>(0xe0 | (cp >> 12)));
      s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      s.push_back(static_cast<char>(0xf0 | (cp >> 18)));
      s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }

  // Valid UTF-8 of about `n` bytes: ASCII, 2-, 3- and 4-byte sequences, the edges among them.
  std::string Utf8(uint32_t n) {
    static constexpr uint32_t kEdges[] = {0x7f,   0x80,   0x7ff,  0x800,   0xd7ff,  0xe000,
                                          0xfffd, 0xfffe, 0xffff, 0x10000, 0x10ffff};
    std::string s;
    while (s.size() < n) {
      const uint32_t pick = Below(100);
      if (pick < 60) {
        AppendCodePoint(s, 0x20 + Below(0x5f));
      } else if (pick < 72) {
        AppendCodePoint(s, 0x80 + Below(0x800 - 0x80));
      } else if (pick < 84) {
        uint32_t cp = 0x800 + Below(0x10000 - 0x800);
        if (cp >= 0xd800 && cp <= 0xdfff) cp -= 0x800;
        AppendCodePoint(s, cp);
      } else if (pick < 94) {
        AppendCodePoint(s, 0x10000 + Below(0x110000 - 0x10000));
      } else {
        AppendCodePoint(s, kEdges[Below(std::size(kEdges))]);
      }
    }
    return s;
  }

  // Puts something that is not UTF-8 into `s` at a random place (inside a sequence, too).
  void BreakUtf8(std::string& s) {
    static constexpr const char* kBad[] = {
        "\x80",
        "\xbf",
        "\xc0\xaf",
        "\xc1\xbf",
        "\xe0\x80\xaf",
        "\xe0\x9f\xbf",
        "\xed\xa0\x80",
        "\xed\xbf\xbf",
        "\xf0\x80\x80\xaf",
        "\xf0\x8f\xbf\xbf",
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80",
        "\xf8",
        "\xfe",
        "\xff",
        "\xc3",
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xe2\x28\xa1",
        "\xc3\x28",
    };
    const std::string bad = kBad[Below(std::size(kBad))];
    const uint32_t where =
        Percent(30) ? static_cast<uint32_t>(s.size()) : Below(static_cast<uint32_t>(s.size()) + 1);
    s.insert(where, bad);
  }

  uint32_t MessageLength() {
    const uint32_t pick = Below(100);
    if (pick < 40) return Below(21);
    if (pick < 65) return 21 + Below(180);
    if (pick < 75) return 120 + Below(11);
    if (pick < 87) return 1000 + Below(3096);
    if (pick < 97) return 4090 + Below(11);  // around the limit, 4096
    return 4097 + Below(904);
  }

  // A data message: one frame, or fragments (empty ones too, cut anywhere, inside UTF-8
  // sequences too) with control frames between them.
  void Message() {
    const bool text = Percent(60);
    std::string payload;
    const uint32_t length = MessageLength();
    if (text) {
      payload = Utf8(length);
      if (Percent(6)) BreakUtf8(payload);
    } else {
      payload = Bytes(length);
    }
    const uint8_t op = text ? 0x1 : 0x2;
    if (Percent(60)) {
      frames_.push_back(Make(op, payload));
      return;
    }
    const uint32_t fragments = 2 + Below(4);
    std::vector<uint32_t> cuts;
    for (uint32_t i = 0; i + 1 < fragments; ++i) {
      cuts.push_back(Below(static_cast<uint32_t>(payload.size()) + 1));
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.push_back(static_cast<uint32_t>(payload.size()));
    if (Percent(15)) cuts.push_back(static_cast<uint32_t>(payload.size()));  // an empty last one
    uint32_t from = 0;
    for (size_t i = 0; i < cuts.size(); ++i) {
      const bool last = i + 1 == cuts.size();
      frames_.push_back(Make(i == 0 ? op : 0x0, payload.substr(from, cuts[i] - from), last));
      from = cuts[i];
      if (!last) {
        while (Percent(25)) frames_.push_back(Control(Percent(50) ? 0x9 : 0xa));
        if (Percent(2)) frames_.push_back(CloseFrame());
      }
    }
  }

  Frame Control(uint8_t op) {
    const uint32_t pick = Below(100);
    const uint32_t n = pick < 50 ? Below(10) : pick < 90 ? Below(126) : 120 + Below(6);
    return Make(op, Percent(50) ? Utf8(n).substr(0, n) : Bytes(n));
  }

  uint16_t CloseCode() {
    static constexpr uint16_t kValid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                          1011, 1012, 1013, 3000, 3999, 4000, 4001, 4999};
    static constexpr uint16_t kInvalid[] = {0,    1,    999,  1004, 1005, 1006, 1014, 1015,  1016,
                                            1100, 2000, 2999, 5000, 5001, 6000, 9999, 32768, 65535};
    const uint32_t pick = Below(100);
    if (pick < 60) return kValid[Below(std::size(kValid))];
    if (pick < 80) return static_cast<uint16_t>(3000 + Below(2000));
    if (pick < 92) return kInvalid[Below(std::size(kInvalid))];
    if (pick < 96) return static_cast<uint16_t>(5000 + Below(60536));
    return static_cast<uint16_t>(1016 + Below(1984));
  }

  Frame CloseFrame() {
    const uint32_t pick = Below(100);
    std::string payload;
    if (pick < 15) {
      // no payload
    } else if (pick < 18) {
      payload = Bytes(1);
    } else {
      const uint16_t code = CloseCode();
      payload = {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
      if (pick >= 50) {
        std::string reason = Utf8(Below(124));
        while (reason.size() > 123) {  // drop whole code points from the end
          char c;
          do {
            c = reason.back();
            reason.pop_back();
          } while ((static_cast<uint8_t>(c) & 0xc0) == 0x80);
        }
        if (Percent(10)) BreakUtf8(reason);
        if (Percent(3)) reason += Utf8(130);  // over 125 bytes in all
        payload += reason;
      }
    }
    return Make(0x8, payload);
  }

  // One thing wrong with one frame.
  void FrameFault() {
    if (frames_.empty()) return;
    Frame& f = frames_[Below(static_cast<uint32_t>(frames_.size()))];
    switch (Below(12)) {
      case 0:
        f.masked = false;
        break;
      case 1:
        f.rsv = static_cast<uint8_t>(1 + Below(7));
        break;
      case 2: {
        static constexpr uint8_t kReserved[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf};
        f.op = kReserved[Below(std::size(kReserved))];
        break;
      }
      case 3:
        f.fin = !f.fin;
        break;
      case 4:
        f.length = Frame::Length::k16;  // not the shortest form when under 126
        if (Percent(30)) f.declared = 125 + Below(2);
        break;
      case 5:
        f.length = Frame::Length::k64;  // not the shortest form up to 65535
        if (Percent(30)) f.declared = 65535 + Below(2);
        break;
      case 6:
        f.length = Frame::Length::k64TopBit;
        break;
      case 7:
        if (f.op >= 0x8) {
          f.payload += Bytes(126 - static_cast<uint32_t>(std::min<size_t>(f.payload.size(), 125)) +
                             Below(20));
        } else {
          f.payload += Bytes(Below(5000));
        }
        break;
      case 8:  // a continuation where a message starts, or a new message inside one
        if (f.op == 0x0) {
          f.op = Percent(50) ? 0x1 : 0x2;
        } else if (f.op < 0x8) {
          f.op = 0x0;
        }
        break;
      case 9:  // a stray control or data frame inserted
        frames_.insert(frames_.begin() + Below(static_cast<uint32_t>(frames_.size()) + 1),
                       Percent(50)
                           ? Control(Percent(50) ? 0x9 : 0xa)
                           : Make(static_cast<uint8_t>(Below(3)), Utf8(Below(20)), Percent(50)));
        break;
      case 10:
        f.fin = false;  // a control frame not final; a data message that never ends
        break;
      case 11:
        f.length = Frame::Length::k64Huge;
        break;
    }
  }

  std::mt19937 rng_;
  std::vector<Frame> frames_;
};

constexpr uint32_t kSeed = 20240607;
constexpr int kCases = 12000;

TEST(FrameReaderBeastTest, GeneratedStreamsReadAlike) {
  const auto start = std::chrono::steady_clock::now();
  Generator gen(kSeed);
  std::array<int, kDifferenceCount> counts{};
  int shown = 0;
  // FRAME_READER_BEAST_SHOW=1 prints a few cases of each known difference.
  const bool show_known = std::getenv("FRAME_READER_BEAST_SHOW") != nullptr;
  std::array<int, kDifferenceCount> shown_known{};
  size_t bytes = 0;
  int messages = 0, controls = 0, closes = 0, fails = 0, eofs = 0;
  for (int i = 0; i < kCases; ++i) {
    const std::string wire = gen.Case();
    bytes += wire.size();
    const std::vector<Ev> ours = ReadOurs(wire, {wire.size() + 1});
    const std::vector<size_t> pieces = gen.Pieces();
    const std::vector<Ev> ours_pieces = ReadOurs(wire, pieces);
    ASSERT_EQ(Show(ours), Show(ours_pieces)) << "case " << i << ": fed whole and in pieces\n"
                                             << Hex(wire, 400);
    ASSERT_TRUE(ours == ours_pieces) << "case " << i;
    // Beast reads the test stream as it comes, mostly; sometimes a few bytes per read.
    const size_t read_size = gen.Percent(80) ? 0 : 1 + gen.Below(64);
    const BeastRun theirs = ReadBeast(wire, read_size);
    ASSERT_EQ(theirs.trouble, "") << "case " << i << ": Beast's run\n" << Hex(wire, 400);
    const Difference d = Classify(ours, theirs.events);
    ++counts[static_cast<int>(d)];
    if (show_known && d != Difference::kNone && d != Difference::kUnexplained &&
        shown_known[static_cast<int>(d)]++ < 3) {
      std::cout << kDifferenceNames[static_cast<int>(d)] << ", case " << i
                << "\n  stream: " << Hex(wire, 200) << "\n  FrameReader: " << Show(ours)
                << "\n  Beast:       " << Show(theirs.events) << "\n";
    }
    if (d == Difference::kUnexplained && shown++ < 10) {
      ADD_FAILURE() << "case " << i << ": the readers differ\n  stream: " << Hex(wire, 600)
                    << "\n  FrameReader: " << Show(ours)
                    << "\n  Beast:       " << Show(theirs.events);
    }
    for (const Ev& e : ours) {
      switch (e.kind) {
        case Ev::K::kText:
        case Ev::K::kBinary:
          ++messages;
          break;
        case Ev::K::kPing:
        case Ev::K::kPong:
          ++controls;
          break;
        case Ev::K::kClose:
          ++closes;
          break;
        case Ev::K::kFail:
          ++fails;
          break;
        case Ev::K::kEof:
          ++eofs;
          break;
      }
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << kCases << " streams (" << bytes << " bytes), " << seconds << " s; FrameReader read "
            << messages << " messages, " << controls << " pings and pongs; ends: " << closes
            << " closes, " << fails << " failures, " << eofs << " ends of the bytes\n";
  for (int k = 0; k < kDifferenceCount; ++k) {
    std::cout << "  " << kDifferenceNames[k] << ": " << counts[k] << "\n";
  }
  EXPECT_EQ(counts[static_cast<int>(Difference::kUnexplained)], 0);
  // The seed exercises every known difference (the generator changed if not).
  for (int k = 1; k < static_cast<int>(Difference::kUnexplained); ++k) {
    EXPECT_GT(counts[k], 0) << kDifferenceNames[k];
  }
  // Most streams read alike.
  EXPECT_GT(counts[static_cast<int>(Difference::kNone)], kCases * 8 / 10);
}

// ---- The known differences, each with a minimal byte string ------------------------------------

// Frames masked with the key 00 00 00 00, so the payload bytes read as they are.
std::string Masked(uint8_t b0, const std::string& payload) {
  std::string out{static_cast<char>(b0), static_cast<char>(0x80 | payload.size())};
  return out + std::string(4, '\0') + payload;
}

TEST(FrameReaderBeastKnownDifferences, CloseCodeAbove4999) {
  const std::string wire = Masked(0x88, "\x13\x88");  // 88 82 00000000 13 88: close 5000
  EXPECT_EQ(Show(ReadOurs(wire, {wire.size()})), "fail 1002 (invalid close code)");
  EXPECT_EQ(Show(ReadBeast(wire).events), "close 5000 []");
}

TEST(FrameReaderBeastKnownDifferences, CloseReasonNotUtf8) {
  const std::string wire = Masked(0x88, "\x03\xe8\xff");  // 88 83 00000000 03 e8 ff
  EXPECT_EQ(Show(ReadOurs(wire, {wire.size()})), "fail 1007 (close reason that is not UTF-8)");
  EXPECT_EQ(Show(ReadBeast(wire).events), "fail 1002");
}

TEST(FrameReaderBeastKnownDifferences, LengthTopBitSet) {
  // 82 ff 80 00 00 00 00 00 00 00 00000000: a binary frame of 2^63 bytes.
  std::string wire = "\x82\xff\x80";
  wire += std::string(7 + 4, '\0');
  EXPECT_EQ(Show(ReadOurs(wire, {wire.size()})), "fail 1002 (frame length over 2^63)");
  EXPECT_EQ(Show(ReadBeast(wire).events), "fail 1009");
}

// Not a difference any more: both fail text that is not UTF-8 as soon as its bytes arrive, before
// the fragments and control frames that follow.
TEST(FrameReaderBeastAlike, TextThatIsNotUtf8FailsAsSoonAsItArrives) {
  // 01 81 00000000 ff, 89 80 00000000, 88 80 00000000: a first text fragment that is not UTF-8,
  // a ping, a close.
  const std::string wire = Masked(0x01, "\xff") + Masked(0x89, "") + Masked(0x88, "");
  EXPECT_EQ(Show(ReadOurs(wire, {wire.size()})), "fail 1007 (text that is not UTF-8)");
  EXPECT_EQ(Show(ReadBeast(wire).events), "fail 1007");
  // 01 81 00000000 ff and nothing more.
  const std::string cut = Masked(0x01, "\xff");
  EXPECT_EQ(Show(ReadOurs(cut, {cut.size()})), "fail 1007 (text that is not UTF-8)");
  EXPECT_EQ(Show(ReadBeast(cut).events), "fail 1007");
  // An overlong form's first two bytes (e0 80) cannot start valid UTF-8 either.
  const std::string overlong = Masked(0x01, "\xe0\x80");
  EXPECT_EQ(Show(ReadOurs(overlong, {overlong.size()})), "fail 1007 (text that is not UTF-8)");
  EXPECT_EQ(Show(ReadBeast(overlong).events), "fail 1007");
}

TEST(FrameReaderBeastKnownDifferences, BeastEmptyFinalFragment) {
  // 01 81 00000000 c3, 80 80 00000000: a text message "\xc3" whose final fragment is empty.
  const std::string wire = Masked(0x01, "\xc3") + Masked(0x80, "");
  EXPECT_EQ(Show(ReadOurs(wire, {wire.size()})), "fail 1007 (text that is not UTF-8)");
  EXPECT_EQ(Show(ReadBeast(wire).events), "text[c3 ], eof");
  // The unfinished sequence carries over: then 81 81 00000000 a9 ("\xa9", not UTF-8) is taken,
  // and 81 81 00000000 41 ("A") is refused.
  EXPECT_EQ(Show(ReadBeast(wire + Masked(0x81, "\xa9")).events), "text[c3 ], text[a9 ], eof");
  EXPECT_EQ(Show(ReadBeast(wire + Masked(0x81, "A")).events), "text[c3 ], fail 1007");
}

}  // namespace
}  // namespace push::edge
