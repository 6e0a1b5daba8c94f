// The operator CLI against a real pushd: push, list and delete do what they print, errors exit
// non-zero with the server's status on stderr, usage errors exit 2. watch (WatchPresence) runs in
// the background while real WebSocket clients connect; receipts (GetReceipts) follows a message
// from stored to written to acknowledged.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/ports.h"
#include "tests/testing/pushd_launcher.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"
#include "tests/testing/text.h"
#include "tests/testing/ws_connect.h"

namespace push::testing {
namespace {

namespace json = boost::json;

RunResult Pushctl(const PushdProcess& pushd, std::vector<std::string> args) {
  args.push_back("--addr");
  args.push_back("127.0.0.1:" + std::to_string(pushd.grpc_port()));
  return RunCommand(PushctlBinary(), args, {}, 20000);
}

// pushctl running in the background (watch): its stdout and stderr are read as they come, so a
// test can wait for a line, act, and then wait for the exit. Killed on destruction if still
// running.
class BackgroundPushctl {
 public:
  BackgroundPushctl(const PushdProcess& pushd, std::vector<std::string> args) {
    args.push_back("--addr");
    args.push_back("127.0.0.1:" + std::to_string(pushd.grpc_port()));
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return;
    std::string binary = PushctlBinary();
    std::vector<char*> argv = ExecArgv(binary, args);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    reader_ = std::thread([this, out = out[0], err = err[0]] { ReadAll(out, err); });
  }
  ~BackgroundPushctl() {
    if (pid_ > 0 && exit_status_ == kStillRunning) StopProcess(pid_, 2000);
    if (reader_.joinable()) reader_.join();
  }

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  std::string out() {
    std::lock_guard<std::mutex> lock(mu_);
    return out_;
  }
  std::string err() {
    std::lock_guard<std::mutex> lock(mu_);
    return err_;
  }
  // Waits (bounded) until stderr contains `text`.
  bool WaitForErr(const std::string& text, std::chrono::milliseconds timeout) {
    return WaitFor([&] { return Contains(err(), text); }, timeout);
  }
  // Waits at most `timeout_ms` for the exit; its status, or kStillRunning.
  int Wait(int timeout_ms) {
    if (exit_status_ == kStillRunning) exit_status_ = WaitForExit(pid_, timeout_ms);
    if (exit_status_ != kStillRunning && reader_.joinable()) reader_.join();
    return exit_status_;
  }

 private:
  void ReadAll(int out, int err) {
    ReadOutputs(out, err, -1, [this](int stream, const char* data, size_t size) {
      std::lock_guard<std::mutex> lock(mu_);
      (stream == 0 ? out_ : err_).append(data, size);
    });
  }

  pid_t pid_ = -1;
  int exit_status_ = kStillRunning;
  std::thread reader_;
  std::mutex mu_;
  std::string out_;
  std::string err_;
};

// The cursor in "watching after cursor N" (stderr), or -1.
int64_t StartCursor(const std::string& err) {
  std::smatch m;
  if (!std::regex_search(err, m, std::regex("watching after cursor (\\d+)"))) return -1;
  return std::stoll(m[1]);
}

// The event lines of watch's stdout (the header left out), each split into its columns:
// CURSOR KIND USER CONNECTION DEVICE NODE AT REASON (the reason may hold spaces: the rest).
std::vector<std::vector<std::string>> EventLines(const std::string& out) {
  std::vector<std::vector<std::string>> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("CURSOR", 0) == 0) continue;
    std::istringstream words(line);
    std::vector<std::string> columns;
    for (std::string w; columns.size() < 7 && words >> w;) columns.push_back(w);
    std::string rest;
    std::getline(words >> std::ws, rest);
    columns.push_back(rest);
    lines.push_back(columns);
  }
  return lines;
}

TEST(PushctlTest, PushListDeleteRoundTrip) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto ws = WsClient::Connect(pushd.ws_port(), "/ws?user_id=alice");
  ASSERT_TRUE(ws);
  json::value welcome = ws->ReadJson();
  std::string connection_id = json::value_to<std::string>(welcome.at("connection_id"));

  RunResult push = Pushctl(pushd, {"push", "--user", "alice", "--data", R"({"hello":1})"});
  EXPECT_EQ(push.exit_status, 0) << push.err;
  EXPECT_TRUE(Contains(push.out, "seq=1")) << push.out;
  EXPECT_TRUE(Contains(push.out, "delivered=1")) << push.out;
  json::value frame = ws->ReadJson();
  EXPECT_EQ(frame.at("type"), "message");
  EXPECT_EQ(frame.at("seq"), 1);
  EXPECT_EQ(frame.at("data"), json::parse(R"({"hello":1})"));
  // The printed message_id is the one the client got.
  std::string id = json::value_to<std::string>(frame.at("id"));
  EXPECT_TRUE(Contains(push.out, "message_id=" + id)) << push.out;

  RunResult list = Pushctl(pushd, {"list"});
  EXPECT_EQ(list.exit_status, 0) << list.err;
  EXPECT_TRUE(Contains(list.out, "alice")) << list.out;
  EXPECT_TRUE(Contains(list.out, connection_id)) << list.out;
  EXPECT_TRUE(Contains(list.out, "test-node")) << list.out;
  EXPECT_TRUE(Contains(list.out, "127.0.0.1:")) << list.out;
  EXPECT_TRUE(Contains(list.out, "total: 1")) << list.out;

  RunResult del = Pushctl(pushd, {"delete", "--user", "alice"});
  EXPECT_EQ(del.exit_status, 0) << del.err;
  EXPECT_TRUE(Contains(del.out, "closed 1")) << del.out;
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed);
  EXPECT_EQ(event.close_code, 1000);
  EXPECT_EQ(event.close_reason, "deleted");

  auto stub = pushd.Stub();
  ASSERT_TRUE(WaitFor([&] { return DoList(*stub).total() == 0; }));
  list = Pushctl(pushd, {"list"});
  EXPECT_EQ(list.exit_status, 0) << list.err;
  EXPECT_TRUE(Contains(list.out, "total: 0")) << list.out;
  EXPECT_FALSE(Contains(list.out, connection_id)) << list.out;
}

TEST(PushctlTest, PushOptionsAndStoredMessage) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  // Nobody connected: stored, and the CLI says so.
  RunResult push =
      Pushctl(pushd, {"push", "--user=bob", "--data=[1,2]", "--message_id=m-1", "--ttl", "60"});
  EXPECT_EQ(push.exit_status, 0) << push.err;
  EXPECT_TRUE(Contains(push.out, "message_id=m-1")) << push.out;
  EXPECT_TRUE(Contains(push.out, "delivered=0")) << push.out;
  // Same key again: the same message, not a second one.
  RunResult again = Pushctl(pushd, {"push", "--user=bob", "--data=[1,2]", "--message_id=m-1"});
  EXPECT_EQ(again.exit_status, 0) << again.err;
  EXPECT_TRUE(Contains(again.out, "seq=1")) << again.out;

  auto ws = WsClient::Connect(pushd.ws_port(), "/ws?user_id=bob");
  ASSERT_TRUE(ws);
  EXPECT_EQ(ws->ReadJson().at("seq"), 1);
  json::value frame = ws->ReadJson();
  EXPECT_EQ(frame.at("id"), "m-1");
  EXPECT_EQ(frame.at("data"), json::parse("[1,2]"));
}

TEST(PushctlTest, DeleteWithReasonAndListFilter) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  auto carol = WsClient::Connect(pushd.ws_port(), "/ws?user_id=carol");
  auto dan = WsClient::Connect(pushd.ws_port(), "/ws?user_id=dan");
  ASSERT_TRUE(carol && dan);
  carol->ReadJson();
  dan->ReadJson();

  RunResult list = Pushctl(pushd, {"list", "--user", "dan"});
  EXPECT_EQ(list.exit_status, 0) << list.err;
  EXPECT_TRUE(Contains(list.out, "dan")) << list.out;
  EXPECT_FALSE(Contains(list.out, "carol")) << list.out;
  EXPECT_TRUE(Contains(list.out, "total: 1")) << list.out;

  RunResult del = Pushctl(pushd, {"delete", "--user", "carol", "--reason", "maintenance"});
  EXPECT_EQ(del.exit_status, 0) << del.err;
  EXPECT_TRUE(Contains(del.out, "closed 1")) << del.out;
  WsEvent event = carol->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed);
  EXPECT_EQ(event.close_code, 1000);
  EXPECT_EQ(event.close_reason, "maintenance");
  // dan is untouched.
  auto stub = pushd.Stub();
  ASSERT_TRUE(DoPush(*stub, "dan", "1").ok());
  EXPECT_EQ(dan->ReadJson().at("data"), 1);
}

TEST(PushctlTest, ServerErrorsExitNonZeroWithStatusOnStderr) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  RunResult del = Pushctl(pushd, {"delete", "--user", "nobody"});
  EXPECT_NE(del.exit_status, 0);
  EXPECT_NE(del.exit_status, -1);
  EXPECT_TRUE(Contains(del.err, "NOT_FOUND")) << del.err;
  EXPECT_TRUE(Contains(del.err, "nobody")) << del.err;
  EXPECT_TRUE(del.out.empty()) << del.out;

  RunResult push = Pushctl(pushd, {"push", "--user", "alice", "--data", "{not json"});
  EXPECT_NE(push.exit_status, 0);
  EXPECT_NE(push.exit_status, -1);
  EXPECT_TRUE(Contains(push.err, "INVALID_ARGUMENT")) << push.err;
  EXPECT_TRUE(Contains(push.err, "JSON")) << push.err;

  push = Pushctl(pushd, {"push", "--user", "bad user", "--data", "1"});
  EXPECT_NE(push.exit_status, 0);
  EXPECT_TRUE(Contains(push.err, "INVALID_ARGUMENT")) << push.err;
  EXPECT_TRUE(Contains(push.err, "user_id")) << push.err;

  RunResult list = Pushctl(pushd, {"list", "--page_size", "5000"});
  EXPECT_NE(list.exit_status, 0);
  EXPECT_TRUE(Contains(list.err, "INVALID_ARGUMENT")) << list.err;
  EXPECT_TRUE(Contains(list.err, "page_size")) << list.err;
}

// The common options may come before the command (README, "Running several nodes"), in both
// spellings, mixed with the command's own options after it.
TEST(PushctlTest, CommonOptionsBeforeTheCommand) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  std::string addr = "127.0.0.1:" + std::to_string(pushd.grpc_port());
  auto ws = WsClient::Connect(pushd.ws_port(), "/ws?user_id=erin");
  ASSERT_TRUE(ws);
  ws->ReadJson();

  RunResult push = RunCommand(
      PushctlBinary(), {"--addr", addr, "--timeout", "5", "push", "--user", "erin", "--data", "1"},
      {}, 20000);
  EXPECT_EQ(push.exit_status, 0) << push.err;
  EXPECT_TRUE(Contains(push.out, "delivered=1")) << push.out;
  EXPECT_EQ(ws->ReadJson().at("data"), 1);

  RunResult list =
      RunCommand(PushctlBinary(), {"--addr=" + addr, "list", "--user=erin"}, {}, 20000);
  EXPECT_EQ(list.exit_status, 0) << list.err;
  EXPECT_TRUE(Contains(list.out, "total: 1")) << list.out;

  // One common option before, another after: both apply.
  RunResult del = RunCommand(
      PushctlBinary(),
      {"--timeout=5", "delete", "--user", "erin", "--reason", "bye", "--addr", addr}, {}, 20000);
  EXPECT_EQ(del.exit_status, 0) << del.err;
  EXPECT_TRUE(Contains(del.out, "closed 1")) << del.out;
  WsEvent event = ws->Read();
  ASSERT_EQ(event.kind, WsEvent::kClosed);
  EXPECT_EQ(event.close_reason, "bye");
}

// TLS and API key options before the command reach the call: against a plain-text server, --tls
// before the command fails the handshake (not a usage error), and a missing key file is named.
TEST(PushctlTest, TlsAndKeyOptionsBeforeTheCommandApply) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  std::string addr = "127.0.0.1:" + std::to_string(pushd.grpc_port());
  RunResult r =
      RunCommand(PushctlBinary(), {"--tls", "--addr", addr, "--timeout", "3", "list"}, {}, 20000);
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_TRUE(Contains(r.err, "UNAVAILABLE") || Contains(r.err, "DEADLINE_EXCEEDED")) << r.err;

  r = RunCommand(PushctlBinary(), {"--api_key_file", "/nonexistent/key", "--addr", addr, "list"},
                 {}, 20000);
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_TRUE(Contains(r.err, "/nonexistent/key")) << r.err;

  r = RunCommand(PushctlBinary(),
                 {"--tls_server_name=example.com", "--addr", addr, "--timeout", "3", "list"}, {},
                 20000);
  EXPECT_EQ(r.exit_status, 1) << r.err;  // TLS was asked for: plain text does not answer

  r = RunCommand(PushctlBinary(), {"--tls_ca_file", "/nonexistent/ca.pem", "list"}, {}, 20000);
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_TRUE(Contains(r.err, "/nonexistent/ca.pem")) << r.err;
}

TEST(PushctlTest, UnreachableServerIsUnavailable) {
  RunResult r = RunCommand(
      PushctlBinary(),
      {"list", "--addr", "127.0.0.1:" + std::to_string(FreeLoopbackPort()), "--timeout", "3"}, {},
      20000);
  EXPECT_NE(r.exit_status, 0);
  EXPECT_NE(r.exit_status, -1);
  EXPECT_TRUE(Contains(r.err, "UNAVAILABLE") || Contains(r.err, "DEADLINE_EXCEEDED")) << r.err;
}

TEST(PushctlTest, UsageErrorsExit2) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {{"frobnicate"}, "frobnicate"},
           {{}, "usage"},
           {{"push", "--data", "1"}, "--user"},
           {{"push", "--user", "alice"}, "--data"},
           {{"delete"}, "--user"},
           {{"push", "--user", "a", "--data", "1", "--bogus", "x"}, "bogus"},
           {{"push", "--user", "a", "--data", "1", "--ttl", "soon"}, "ttl"},
           {{"list", "--page_size", "many"}, "page_size"},
           {{"list", "--user"}, "--user"},
           // receipts: the user, and exactly one of --id and --seq.
           {{"receipts", "--id", "m-1"}, "receipts needs --user"},
           {{"receipts", "--user", "a"}, "needs the message: --id MESSAGE_ID or --seq N"},
           {{"receipts", "--user", "a", "--id", "m", "--seq", "1"}, "not both"},
           {{"receipts", "--user", "a", "--message_id", "m", "--seq", "1"}, "not both"},
           {{"receipts", "--user", "a", "--seq", "0"}, "--seq must be a positive"},
           {{"receipts", "--user", "a", "--seq", "x"}, "--seq must be a positive"},
           {{"receipts", "--user", "a", "--id="}, "--id must not be empty"},
           {{"receipts", "--user", "a", "--after", "1"}, "--after is not an option of 'receipts'"},
           // watch: numbers.
           {{"watch", "--count", "0"}, "--count must be a positive"},
           {{"watch", "--count", "many"}, "--count must be a positive"},
           {{"watch", "--after", "-1"}, "--after must be"},
           {{"watch", "--id", "m"}, "--id is not an option of 'watch'"},
           {{"list", "--count", "1"}, "--count is not an option of 'list'"}}) {
    SCOPED_TRACE(c.args.empty() ? "<no args>" : c.args[0] + " ...");
    // No server: usage errors are found before any call (a call would fail against this
    // closed port and exit 1, not 2).
    std::vector<std::string> args = c.args;
    if (!args.empty()) {
      args.insert(args.begin() + 1, {"--addr", "127.0.0.1:" + std::to_string(FreeLoopbackPort())});
    }
    RunResult r = RunCommand(PushctlBinary(), args, {}, 20000);
    EXPECT_EQ(r.exit_status, 2) << r.err;
    EXPECT_TRUE(Contains(r.err, c.says)) << r.err;
  }
  RunResult help = RunCommand(PushctlBinary(), {"--help"}, {}, 20000);
  EXPECT_EQ(help.exit_status, 0);
  EXPECT_TRUE(Contains(help.out, "pushctl push")) << help.out;
  EXPECT_TRUE(Contains(help.out, "before or after")) << help.out;
  EXPECT_TRUE(Contains(help.out, "pushctl receipts --user ID (--id MESSAGE_ID | --seq N)"))
      << help.out;
  EXPECT_TRUE(Contains(help.out, "pushctl watch  [--user ID]... [--after CURSOR] [--count K]"))
      << help.out;
  help = RunCommand(PushctlBinary(), {"--addr", "127.0.0.1:1", "push", "--help"}, {}, 20000);
  EXPECT_EQ(help.exit_status, 0);
  EXPECT_TRUE(Contains(help.out, "pushctl push")) << help.out;
}

// Misplaced and unknown options, with the options before the command: exit 2 with a message that
// says what is wrong, before any call (the address is a closed port: a call would exit 1).
TEST(PushctlTest, MisplacedOrUnknownOptionsExit2WithAClearMessage) {
  std::string addr = "127.0.0.1:" + std::to_string(FreeLoopbackPort());
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           // A command's own option before the command.
           {{"--addr", addr, "--user", "a", "push", "--data", "1"},
            "--user is an option of 'push', not a common one: put it after the command"},
           {{"--data=1", "list", "--addr", addr}, "--data is not an option of 'list'"},
           // An option of another command.
           {{"--addr", addr, "list", "--purge"}, "--purge is not an option of 'list'"},
           {{"--addr", addr, "push", "--user", "a", "--data", "1", "--reason", "x"},
            "--reason is not an option of 'push'"},
           // Unknown options, before or after.
           {{"--bogus", "x", "--addr", addr, "list"}, "unknown option --bogus"},
           {{"--addr", addr, "list", "--bogus=1"}, "unknown option --bogus"},
           {{"-a", addr, "list"}, "unknown option -a"},
           // Values: missing, or given to a flag.
           {{"list", "--addr"}, "--addr needs a value"},
           {{"--addr", addr, "--tls=yes", "list"}, "--tls takes no value"},
           // No command, an unknown one, a stray word.
           {{"--addr", addr}, "no command"},
           {{"--addr", addr, "--user", "a"}, "--user needs a command before it"},
           {{"--addr", addr, "send"}, "unknown command 'send'"},
           {{"--addr", addr, "list", "alice"}, "unexpected argument 'alice'"},
       }) {
    std::string joined;
    for (const std::string& a : c.args) joined += " " + a;
    SCOPED_TRACE("pushctl" + joined);
    RunResult r = RunCommand(PushctlBinary(), c.args, {}, 20000);
    EXPECT_EQ(r.exit_status, 2) << r.err;
    EXPECT_TRUE(Contains(r.err, "pushctl: " + c.says)) << r.err;
    EXPECT_TRUE(Contains(r.err, "usage: pushctl [OPTIONS] COMMAND")) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

// watch --count 2, started before the user connects: once it says it is live, a connection gives
// CONNECTED and ONLINE, printed as they come, with consecutive cursors after the start; then it
// stops by itself and says where to resume.
TEST(PushctlWatchTest, CountTwoPrintsConnectedAndOnlineOfAUserWhoConnects) {
  PushdProcess pushd({"--node_id=watch-node"});
  ASSERT_TRUE(pushd.started());
  BackgroundPushctl watch(pushd, {"watch", "--count", "2", "--timeout", "60"});
  ASSERT_TRUE(watch.started());
  ASSERT_TRUE(watch.WaitForErr("watching after cursor", std::chrono::seconds(20))) << watch.err();
  int64_t start = StartCursor(watch.err());
  ASSERT_GE(start, 0) << watch.err();

  boost::json::value welcome;
  auto ws = ConnectUser(pushd, "alice", "", &welcome);
  ASSERT_TRUE(ws);
  std::string connection_id(welcome.at("connection_id").as_string());
  ASSERT_EQ(watch.Wait(20000), 0) << watch.err();
  std::string out = watch.out();
  EXPECT_EQ(out.rfind("CURSOR   KIND", 0), 0u) << out;
  std::vector<std::vector<std::string>> lines = EventLines(out);
  ASSERT_EQ(lines.size(), 2u) << out;
  EXPECT_EQ(lines[0][0], std::to_string(start + 1)) << out;
  EXPECT_EQ(lines[0][1], "CONNECTED") << out;
  EXPECT_EQ(lines[0][2], "alice") << out;
  EXPECT_EQ(lines[0][3], connection_id) << out;
  EXPECT_EQ(lines[0][4], "-") << out;  // no device
  EXPECT_EQ(lines[0][5], "watch-node") << out;
  EXPECT_TRUE(
      std::regex_match(lines[0][6], std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << out;
  EXPECT_EQ(lines[1][0], std::to_string(start + 2)) << out;
  EXPECT_EQ(lines[1][1], "ONLINE") << out;
  EXPECT_EQ(lines[1][2], "alice") << out;
  EXPECT_TRUE(Contains(
      watch.err(), "stopped after 2 event(s); resume with --after " + std::to_string(start + 2)))
      << watch.err();
}

// Several --user: only their events (alice connects too and is not printed).
TEST(PushctlWatchTest, UserFiltersAndRepeats) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  BackgroundPushctl watch(pushd,
                          {"watch", "--user", "bob", "--user=carol", "--count=4", "--timeout=60"});
  ASSERT_TRUE(watch.WaitForErr("watching after cursor", std::chrono::seconds(20))) << watch.err();
  auto alice = ConnectUser(pushd, "alice");
  auto bob = ConnectUser(pushd, "bob");
  auto carol = ConnectUser(pushd, "carol");
  ASSERT_TRUE(alice && bob && carol);
  ASSERT_EQ(watch.Wait(20000), 0) << watch.err();
  std::vector<std::vector<std::string>> lines = EventLines(watch.out());
  ASSERT_EQ(lines.size(), 4u) << watch.out();
  std::multiset<std::string> seen;
  for (const auto& l : lines) seen.insert(l[2] + " " + l[1]);
  EXPECT_EQ(seen, (std::multiset<std::string>{"bob CONNECTED", "bob ONLINE", "carol CONNECTED",
                                              "carol ONLINE"}))
      << watch.out();
  EXPECT_FALSE(Contains(watch.out(), "alice")) << watch.out();
}

// --after resumes: the events after that cursor, from the past, in order, each once.
TEST(PushctlWatchTest, AfterResumesFromACursor) {
  PushdProcess pushd({"--presence_offline_delay=200ms"});
  ASSERT_TRUE(pushd.started());
  // Someone else first, who stays: the watch starts after a cursor above 0 (--after 0 is "from
  // now on", not "from the beginning").
  auto early = ConnectUser(pushd, "early");
  ASSERT_TRUE(early);
  ASSERT_TRUE(WaitFor([&] {
    RunResult r = Pushctl(pushd, {"watch", "--after", "1", "--count", "1", "--timeout", "5"});
    return Contains(r.out, "ONLINE");
  }));
  BackgroundPushctl first(pushd, {"watch", "--user", "dora", "--count", "2", "--timeout", "60"});
  ASSERT_TRUE(first.WaitForErr("watching after cursor", std::chrono::seconds(20))) << first.err();
  int64_t start = StartCursor(first.err());
  ASSERT_EQ(start, 2) << first.err();  // early's CONNECTED and ONLINE
  auto ws = ConnectUser(pushd, "dora");
  ASSERT_TRUE(ws);
  ASSERT_EQ(first.Wait(20000), 0) << first.err();
  std::smatch m;
  std::string first_err = first.err();
  ASSERT_TRUE(std::regex_search(first_err, m, std::regex(R"(resume with --after (\d+))")))
      << first_err;
  std::string resume = m[1];
  ws->Close();

  // Everything since the start: CONNECTED, ONLINE, DISCONNECTED and (after the delay) OFFLINE.
  RunResult all = Pushctl(pushd, {"watch", "--user", "dora", "--after", std::to_string(start),
                                  "--count", "4", "--timeout", "15"});
  ASSERT_EQ(all.exit_status, 0) << all.err;
  std::vector<std::vector<std::string>> lines = EventLines(all.out);
  ASSERT_EQ(lines.size(), 4u) << all.out;
  std::vector<std::string> kinds;
  for (size_t i = 0; i < lines.size(); ++i) {
    kinds.push_back(lines[i][1]);
    EXPECT_EQ(lines[i][0], std::to_string(start + 1 + static_cast<int64_t>(i))) << all.out;
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"CONNECTED", "ONLINE", "DISCONNECTED", "OFFLINE"}));
  EXPECT_EQ(lines[2][7], "client closed") << all.out;
  EXPECT_TRUE(Contains(all.err, "watching after cursor " + std::to_string(start))) << all.err;

  // From where the first watch stopped: only what came after.
  RunResult rest = Pushctl(
      pushd, {"watch", "--user", "dora", "--after", resume, "--count", "2", "--timeout", "15"});
  ASSERT_EQ(rest.exit_status, 0) << rest.err;
  lines = EventLines(rest.out);
  ASSERT_EQ(lines.size(), 2u) << rest.out;
  EXPECT_EQ(lines[0][1], "DISCONNECTED") << rest.out;
  EXPECT_EQ(lines[1][1], "OFFLINE") << rest.out;
  EXPECT_EQ(lines[0][0], std::to_string(std::stoll(resume) + 1)) << rest.out;
}

// Bounded by --timeout: without --count that is the asked-for end (exit 0, where to resume);
// with a --count not reached it is a failure.
TEST(PushctlWatchTest, TimeoutEndsTheWatch) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  RunResult r = Pushctl(pushd, {"watch", "--timeout", "1"});
  EXPECT_EQ(r.exit_status, 0) << r.err;
  int64_t start = StartCursor(r.err);
  ASSERT_GE(start, 0) << r.err;
  EXPECT_TRUE(Contains(r.err, "watched for 1 s; resume with --after " + std::to_string(start)))
      << r.err;
  EXPECT_TRUE(EventLines(r.out).empty()) << r.out;

  r = Pushctl(pushd, {"watch", "--count", "1", "--timeout", "1"});
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_TRUE(Contains(r.err, "DEADLINE_EXCEEDED: 0 of 1 event(s) within 1 s")) << r.err;
  EXPECT_TRUE(Contains(r.err, "resume with --after")) << r.err;
}

// A bad user id is the server's INVALID_ARGUMENT, named, before the watch is live.
TEST(PushctlWatchTest, BadUserIdExitsNonZeroWithTheServersMessage) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  RunResult r = Pushctl(pushd, {"watch", "--user", "ok", "--user", "bad user", "--timeout", "10"});
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_TRUE(Contains(r.err, "pushctl: INVALID_ARGUMENT: user_ids[1]")) << r.err;
  EXPECT_FALSE(Contains(r.err, "watching after")) << r.err;
  EXPECT_FALSE(Contains(r.err, "resume with")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

// SIGTERM (or Ctrl-C) ends a watch without a bound cleanly, saying where to resume.
TEST(PushctlWatchTest, ASignalStopsTheWatchWithWhereToResume) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  BackgroundPushctl watch(pushd, {"watch"});
  ASSERT_TRUE(watch.WaitForErr("watching after cursor", std::chrono::seconds(20))) << watch.err();
  auto ws = ConnectUser(pushd, "erin");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitFor([&] { return EventLines(watch.out()).size() == 2; })) << watch.out();
  int64_t start = StartCursor(watch.err());
  kill(watch.pid(), SIGTERM);
  EXPECT_EQ(watch.Wait(10000), 0) << watch.err();
  EXPECT_TRUE(
      Contains(watch.err(), "stopped by SIGTERM; resume with --after " + std::to_string(start + 2)))
      << watch.err();
}

// The node drains: the watch ends UNAVAILABLE, exit 1, with the server's resume point repeated
// as the option to give (--after N).
TEST(PushctlWatchTest, DrainIsUnavailableWithWhereToResume) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  BackgroundPushctl watch(pushd, {"watch", "--timeout", "60"});
  ASSERT_TRUE(watch.WaitForErr("watching after cursor", std::chrono::seconds(20))) << watch.err();
  auto ws = ConnectUser(pushd, "gil");
  ASSERT_TRUE(ws);
  ASSERT_TRUE(WaitFor([&] { return EventLines(watch.out()).size() == 2; })) << watch.out();
  int64_t last = StartCursor(watch.err()) + 2;
  pushd.Signal(SIGTERM);
  EXPECT_EQ(watch.Wait(20000), 1) << watch.err();
  EXPECT_TRUE(Contains(watch.err(), "pushctl: UNAVAILABLE: server is shutting down"))
      << watch.err();
  EXPECT_TRUE(Contains(watch.err(), "\npushctl: resume with --after " + std::to_string(last)))
      << watch.err();
}

// receipts: a message stored while nobody is connected has no receipt; written to a device it is
// WRITTEN for that device, acknowledged it is ACKED; a connection without a device is
// "(no device)". By --id and by --seq alike.
TEST(PushctlReceiptsTest, NothingThenWrittenThenAcked) {
  PushdProcess pushd;
  ASSERT_TRUE(pushd.started());
  RunResult push = Pushctl(pushd, {"push", "--user", "fay", "--data", "1", "--message_id", "m-1"});
  ASSERT_EQ(push.exit_status, 0) << push.err;
  RunResult r = Pushctl(pushd, {"receipts", "--user", "fay", "--id", "m-1"});
  ASSERT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.out, "seq=1 receipts=0 (no device has it yet)\n");

  // A device with ack=1 gets it: WRITTEN, its cursor still 0 (with ack=1 only acks move it).
  auto phone = ConnectUser(pushd, "fay", "&device_id=phone&ack=1");
  ASSERT_TRUE(phone);
  EXPECT_EQ(phone->ReadJson().at("seq"), 1);
  auto receipt_of = [&](const std::vector<std::string>& by, const std::string& device) {
    std::vector<std::string> args = {"receipts", "--user", "fay"};
    args.insert(args.end(), by.begin(), by.end());
    RunResult res = Pushctl(pushd, args);
    EXPECT_EQ(res.exit_status, 0) << res.err;
    std::smatch m;
    std::regex line("(^|\n)" + device + R"( +(WRITTEN|ACKED) +(\d+)\n)");
    return std::regex_search(res.out, m, line) ? m[2].str() + " " + m[3].str() : res.out;
  };
  EXPECT_TRUE(WaitFor([&] {
    return receipt_of({"--id", "m-1"}, "phone") == "WRITTEN 0";
  })) << receipt_of({"--id", "m-1"}, "phone");
  // It acknowledges: ACKED, by id and by seq.
  ASSERT_TRUE(phone->SendText(R"({"type":"ack","seq":1})"));
  EXPECT_TRUE(WaitFor([&] {
    return receipt_of({"--id", "m-1"}, "phone") == "ACKED 1";
  })) << receipt_of({"--id", "m-1"}, "phone");
  EXPECT_EQ(receipt_of({"--seq", "1"}, "phone"), "ACKED 1");

  // A connection without a device (writes move the user's shared cursor): "(no device)".
  auto tab = ConnectUser(pushd, "fay");
  ASSERT_TRUE(tab);
  EXPECT_EQ(tab->ReadJson().at("seq"), 1);
  EXPECT_TRUE(WaitFor([&] {
    return receipt_of({"--seq", "1"}, R"(\(no device\))") == "WRITTEN 1";
  })) << receipt_of({"--seq", "1"}, R"(\(no device\))");
  r = Pushctl(pushd, {"receipts", "--user", "fay", "--seq", "1"});
  EXPECT_TRUE(Contains(r.out, "seq=1 receipts=2\nDEVICE")) << r.out;

  // The server's errors: an id it does not hold, a seq past the latest.
  r = Pushctl(pushd, {"receipts", "--user", "fay", "--id", "nope"});
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_TRUE(Contains(r.err, "pushctl: NOT_FOUND")) << r.err;
  r = Pushctl(pushd, {"receipts", "--user", "fay", "--seq", "9"});
  EXPECT_EQ(r.exit_status, 1) << r.err;
  EXPECT_TRUE(Contains(r.err, "pushctl: INVALID_ARGUMENT")) << r.err;
}

}  // namespace
}  // namespace push::testing
