// The operator CLI against a real pushd: push, list and delete do what they print, errors exit
// non-zero with the server's status on stderr, usage errors exit 2.

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/ports.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/test_util.h"
#include "tests/testing/text.h"

namespace push::testing {
namespace {

namespace json = boost::json;

RunResult Pushctl(const PushdProcess& pushd, std::vector<std::string> args) {
  args.push_back("--addr");
  args.push_back("127.0.0.1:" + std::to_string(pushd.grpc_port()));
  return RunCommand(PushctlBinary(), args, {}, 20000);
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
  for (const Case& c :
       std::vector<Case>{{{"frobnicate"}, "frobnicate"},
                         {{}, "usage"},
                         {{"push", "--data", "1"}, "--user"},
                         {{"push", "--user", "alice"}, "--data"},
                         {{"delete"}, "--user"},
                         {{"push", "--user", "a", "--data", "1", "--bogus", "x"}, "bogus"},
                         {{"push", "--user", "a", "--data", "1", "--ttl", "soon"}, "ttl"},
                         {{"list", "--page_size", "many"}, "page_size"},
                         {{"list", "--user"}, "--user"}}) {
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

}  // namespace
}  // namespace push::testing
