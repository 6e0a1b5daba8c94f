// pushd's flags as an operator meets them: bad values stop the process with exit status 2 and
// one line naming the flag; --flagfile and PUSHD_<FLAG> environment variables configure it;
// --help lists the flags.

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/clients.h"
#include "tests/testing/pushd_process.h"
#include "tests/testing/temp_files.h"
#include "tests/testing/test_util.h"
#include "tests/testing/text.h"

namespace push::testing {
namespace {

// Loopback ports for every run, so a flag that is wrongly accepted never binds a public port;
// the short timeout turns such a run into a failure instead of a hang.
const std::vector<std::string> kLoopback = {"--grpc_listen=127.0.0.1:0", "--ws_listen=127.0.0.1:0"};
// A bound, not a speed check: a rejected start under ASan on a busy machine is slow.
constexpr int kBadFlagTimeoutMs = 20000;

RunResult RunPushd(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
  std::vector<std::string> full = kLoopback;
  full.insert(full.end(), args.begin(), args.end());
  return RunCommand(PushdBinary(), full, env, kBadFlagTimeoutMs);
}

// Checks the contract for a rejected start: exit 2, nothing on stdout, exactly one line on
// stderr, naming every string in `names`.
void ExpectRejected(const RunResult& r, const std::vector<std::string>& names) {
  EXPECT_EQ(r.exit_status, 2) << "stderr: " << r.err << " stdout: " << r.out;
  EXPECT_EQ(r.out.find("pushd ready"), std::string::npos) << r.out;
  ASSERT_FALSE(r.err.empty());
  std::string line = r.err;
  if (line.back() == '\n') line.pop_back();
  EXPECT_EQ(line.find('\n'), std::string::npos) << "more than one line:\n" << r.err;
  for (const std::string& name : names) {
    EXPECT_NE(line.find(name), std::string::npos) << "'" << name << "' not in: " << line;
  }
}

// Connects one client and returns the node_id ListClients shows for it.
std::string NodeIdOf(int ws_port, v1::PushService::Stub& stub) {
  auto ws = WsClient::Connect(ws_port, "/ws?user_id=probe");
  if (!ws) return "<no connection>";
  ws->ReadJson();
  auto list = DoList(stub, "probe");
  if (list.clients_size() != 1) return "<not listed>";
  return list.clients(0).node_id();
}

struct BadFlag {
  std::vector<std::string> args;
  std::vector<std::string> names;  // what the error line must mention
};

TEST(FlagsTest, BadFlagValuesExit2WithOneLineNamingTheFlag) {
  const std::vector<BadFlag> cases = {
      {{"--ping_interval=abc"}, {"ping_interval"}},
      {{"--ping_interval=20"}, {"ping_interval"}},  // a duration needs a unit
      {{"--pong_timeout=-1s"}, {"pong_timeout"}},
      {{"--drain_timeout=0s"}, {"drain_timeout"}},
      {{"--history_ttl=forever"}, {"history_ttl"}},
      {{"--role=bogus"}, {"role"}},
      {{"--role=api"}, {"role", "redis"}},
      {{"--role=edge"}, {"role", "redis"}},
      {{"--history_size=0"}, {"history_size"}},
      {{"--history_size=-3"}, {"history_size"}},
      {{"--history_size=lots"}, {"history_size"}},
      {{"--max_message_bytes=0"}, {"max_message_bytes"}},
      {{"--max_message_bytes=1k"}, {"max_message_bytes"}},
      {{"--send_queue_bytes=abc"}, {"send_queue_bytes"}},
      {{"--ws_listen=nonsense"}, {"ws_listen"}},
      {{"--ws_listen=127.0.0.1:99999"}, {"ws_listen"}},
      {{"--grpc_listen=127.0.0.1"}, {"grpc_listen"}},
      {{"--grpc_listen=:50051"}, {"grpc_listen"}},
      {{"--auth=basic"}, {"auth"}},
      {{"--max_connections_per_user=many"}, {"max_connections_per_user"}},
      {{"--max_connections=-1"}, {"max_connections"}},
      {{"--max_request_header_bytes=100"}, {"max_request_header_bytes"}},
      {{"--handshake_timeout=0s"}, {"handshake_timeout"}},
      {{"--nope=1"}, {"nope"}},
      {{"--ping_interval"}, {"ping_interval"}},  // no value
      {{"stray"}, {"stray"}},
      {{"--redis_password_file=/nonexistent/pw", "--redis=redis://127.0.0.1:1"},
       {"redis_password_file", "/nonexistent/pw"}},
      {{"--redis_password_file=/dev/null"}, {"redis_password_file", "redis"}},
      {{"--redis_user=pushd", "--redis=redis://127.0.0.1:1"},
       {"redis_user", "redis_password_file"}},
      {{"--redis=redis://pushd@127.0.0.1:1"}, {"redis", "password"}},
      {{"--redis=redis://:p%zz@127.0.0.1:1"}, {"redis", "escape"}},
  };
  for (const BadFlag& c : cases) {
    SCOPED_TRACE(c.args[0]);
    ExpectRejected(RunPushd(c.args), c.names);
  }
}

TEST(FlagsTest, BadValueFromEnvironmentExits2NamingTheFlag) {
  RunResult r = RunPushd({}, {"PUSHD_PING_INTERVAL=abc"});
  ExpectRejected(r, {"ping_interval", "PUSHD_PING_INTERVAL"});
  r = RunPushd({}, {"PUSHD_HISTORY_SIZE=0"});
  ExpectRejected(r, {"history_size"});
  r = RunPushd({}, {"PUSHD_ROLE=bogus"});
  ExpectRejected(r, {"role"});
}

TEST(FlagsTest, FlagfileWithGoodValuesConfiguresTheServer) {
  TempFile flags(
      "# pushd settings\n"
      "\n"
      "--node_id=from-flagfile\n"
      "  --max_message_bytes=100  \n");
  PushdProcess pushd({"--flagfile=" + flags.path()});
  ASSERT_TRUE(pushd.started());
  auto stub = pushd.Stub();
  EXPECT_EQ(NodeIdOf(pushd.ws_port(), *stub), "from-flagfile");
  grpc::Status s = DoPush(*stub, "probe", JsonString(99, 'x'));  // 101 bytes
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("100"), std::string::npos) << s.error_message();
  EXPECT_TRUE(DoPush(*stub, "probe", JsonString(98, 'x')).ok());
}

TEST(FlagsTest, FlagfileWithBadValueOrMissingFileExits2) {
  TempFile flags("--node_id=ok\n--history_size=zero\n");
  ExpectRejected(RunPushd({"--flagfile=" + flags.path()}), {"history_size"});
  ExpectRejected(RunPushd({"--flagfile=/nonexistent/pushd.flags"}),
                 {"flagfile", "/nonexistent/pushd.flags"});
}

TEST(FlagsTest, EnvironmentConfiguresTheServerAndCommandLineWins) {
  {
    PushdProcess pushd({}, {.pushd_env = std::vector<std::string>{"PUSHD_NODE_ID=from-env",
                                                                  "PUSHD_MAX_MESSAGE_BYTES=100"}});
    ASSERT_TRUE(pushd.started());
    auto stub = pushd.Stub();
    EXPECT_EQ(NodeIdOf(pushd.ws_port(), *stub), "from-env");
    grpc::Status s = DoPush(*stub, "probe", JsonString(99, 'x'));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("100"), std::string::npos) << s.error_message();
  }
  {
    PushdProcess pushd({"--node_id=from-command-line"},
                       {.pushd_env = std::vector<std::string>{"PUSHD_NODE_ID=from-env"}});
    ASSERT_TRUE(pushd.started());
    auto stub = pushd.Stub();
    EXPECT_EQ(NodeIdOf(pushd.ws_port(), *stub), "from-command-line");
  }
}

TEST(FlagsTest, HelpExitsZeroAndListsEveryContractFlag) {
  RunResult r = RunCommand(PushdBinary(), {"--help"}, {}, kBadFlagTimeoutMs);
  EXPECT_EQ(r.exit_status, 0) << r.err;
  for (const char* flag :
       {"grpc_listen", "ws_listen", "role", "redis", "node_id", "ping_interval", "pong_timeout",
        "history_size", "history_ttl", "max_message_bytes", "send_queue_bytes", "auth",
        "jwt_hs256_secret_file", "jwt_rs256_public_key_file", "allowed_origins", "api_key_file",
        "tls_cert_file", "tls_key_file", "drain_timeout"}) {
    EXPECT_NE(r.out.find(std::string("--") + flag), std::string::npos) << flag << "\n" << r.out;
  }
  // The limits the contract leaves to us (README, "Limits").
  for (const char* flag : {"max_connections_per_user", "max_connections",
                           "max_request_header_bytes", "handshake_timeout"}) {
    EXPECT_NE(r.out.find(std::string("--") + flag), std::string::npos) << flag << "\n" << r.out;
  }
  EXPECT_NE(r.out.find("PUSHD_"), std::string::npos);
  EXPECT_NE(r.out.find("20s"), std::string::npos);  // defaults are shown
}

}  // namespace
}  // namespace push::testing
