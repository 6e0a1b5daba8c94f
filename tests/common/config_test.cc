#include "common/config/config.h"

#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_files.h"

namespace push {
namespace {

using Env = std::map<std::string, std::string>;

::testing::AssertionResult MessageHas(const absl::Status& status, const std::string& part) {
  std::string message(status.message());
  if (message.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << message << "' does not mention '" << part << "'";
}

using ::push::testing::TempFile;

std::string HostName() {
  char buf[256] = {};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

TEST(ParseConfigTest, DefaultsMatchTheContract) {
  absl::StatusOr<Config> c = ParseConfig({}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->grpc_listen, "0.0.0.0:50051");
  EXPECT_EQ(c->ws_listen, "0.0.0.0:8080");
  EXPECT_EQ(c->role, Role::kAll);
  EXPECT_EQ(c->redis, "");
  EXPECT_EQ(c->ping_interval, absl::Seconds(20));
  EXPECT_EQ(c->pong_timeout, absl::Seconds(10));
  EXPECT_EQ(c->history_size, 1000u);
  EXPECT_EQ(c->history_ttl, absl::Hours(24));
  EXPECT_EQ(c->max_message_bytes, 65536u);
  EXPECT_EQ(c->send_queue_bytes, 1048576u);
  EXPECT_EQ(c->auth, "none");
  EXPECT_TRUE(c->allowed_origins.empty());
  EXPECT_EQ(c->api_key_file, "");
  EXPECT_EQ(c->tls_cert_file, "");
  EXPECT_EQ(c->tls_key_file, "");
  EXPECT_EQ(c->drain_timeout, absl::Seconds(25));
  // Limits the contract leaves to us (README, "Limits").
  EXPECT_EQ(c->max_connections_per_user, 32u);
  EXPECT_EQ(c->max_connections, 0u);  // from the open-files limit at start
  EXPECT_EQ(c->max_request_header_bytes, 8192u);
  EXPECT_EQ(c->handshake_timeout, absl::Seconds(10));
}

TEST(ParseConfigTest, ReadsTheLimitFlags) {
  absl::StatusOr<Config> c = ParseConfig(
      {"--max_connections_per_user=0", "--max_connections=100", "--max_request_header_bytes=2048"},
      Env{{"PUSHD_HANDSHAKE_TIMEOUT", "1500ms"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_connections_per_user, 0u);
  EXPECT_EQ(c->max_connections, 100u);
  EXPECT_EQ(c->max_request_header_bytes, 2048u);
  EXPECT_EQ(c->handshake_timeout, absl::Milliseconds(1500));
}

TEST(MaxConnectionsTest, FitsConnectionsHandshakesAndSparesInTheOpenFilesLimit) {
  for (uint64_t files : {400ull, 1024ull, 4096ull, 20000ull, 65536ull, 1048576ull}) {
    uint32_t m = MaxConnectionsFor(files);
    EXPECT_LE(m + HandshakeRoom(m) + 256, files) << files;
    // Not wasteful either: within a few descriptors of the bound.
    EXPECT_GE(m + HandshakeRoom(m) + 256 + 20, files) << files;
  }
  EXPECT_EQ(MaxConnectionsFor(20000), 18522u);
  // Tiny limits still allow some connections.
  EXPECT_GE(MaxConnectionsFor(64), 1u);
  EXPECT_LE(MaxConnectionsFor(64), 64u);
}

TEST(ParseConfigTest, NodeIdDefaultsToHostnameAndCanBeSet) {
  absl::StatusOr<Config> c = ParseConfig({}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_FALSE(HostName().empty());
  EXPECT_EQ(c->node_id, HostName());

  c = ParseConfig({"--node_id=edge-7"}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node_id, "edge-7");
}

TEST(ParseConfigTest, ReadsEveryKindOfFlagFromTheCommandLine) {
  absl::StatusOr<Config> c =
      ParseConfig({"--grpc_listen=127.0.0.1:0", "--ws_listen=[::1]:9090", "--history_size=5",
                   "--history_ttl=90m", "--ping_interval=500ms", "--pong_timeout=1m30s",
                   "--max_message_bytes=1024", "--send_queue_bytes=4096", "--drain_timeout=3s",
                   "--allowed_origins=https://a.example, https://b.example"},
                  {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->grpc_listen, "127.0.0.1:0");
  EXPECT_EQ(c->ws_listen, "[::1]:9090");
  EXPECT_EQ(c->history_size, 5u);
  EXPECT_EQ(c->history_ttl, absl::Minutes(90));
  EXPECT_EQ(c->ping_interval, absl::Milliseconds(500));
  EXPECT_EQ(c->pong_timeout, absl::Seconds(90));
  EXPECT_EQ(c->max_message_bytes, 1024u);
  EXPECT_EQ(c->send_queue_bytes, 4096u);
  EXPECT_EQ(c->drain_timeout, absl::Seconds(3));
  EXPECT_EQ(c->allowed_origins,
            (std::vector<std::string>{"https://a.example", "https://b.example"}));
}

TEST(ParseConfigTest, AcceptsTheSeparateValueForm) {
  absl::StatusOr<Config> c =
      ParseConfig({"--history_size", "7", "--ping_interval", "2s", "--node_id", "n1"}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->history_size, 7u);
  EXPECT_EQ(c->ping_interval, absl::Seconds(2));
  EXPECT_EQ(c->node_id, "n1");
}

TEST(ParseConfigTest, ReadsEnvironmentVariables) {
  absl::StatusOr<Config> c = ParseConfig({}, Env{{"PUSHD_HISTORY_SIZE", "12"},
                                                 {"PUSHD_PING_INTERVAL", "750ms"},
                                                 {"PUSHD_NODE_ID", "from-env"},
                                                 {"PUSHD_WS_LISTEN", "127.0.0.1:8081"},
                                                 {"UNRELATED", "x"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->history_size, 12u);
  EXPECT_EQ(c->ping_interval, absl::Milliseconds(750));
  EXPECT_EQ(c->node_id, "from-env");
  EXPECT_EQ(c->ws_listen, "127.0.0.1:8081");
}

TEST(ParseConfigTest, CommandLineWinsOverEnvironment) {
  absl::StatusOr<Config> c = ParseConfig({"--history_size=3", "--node_id", "from-flag"},
                                         Env{{"PUSHD_HISTORY_SIZE", "12"},
                                             {"PUSHD_NODE_ID", "from-env"},
                                             {"PUSHD_PONG_TIMEOUT", "4s"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->history_size, 3u);
  EXPECT_EQ(c->node_id, "from-flag");
  EXPECT_EQ(c->pong_timeout, absl::Seconds(4));  // not on the command line: env stays
}

TEST(ParseConfigTest, EachCallStartsFromDefaults) {
  ASSERT_TRUE(ParseConfig({"--history_size=5", "--node_id=x"}, {}).ok());
  absl::StatusOr<Config> c = ParseConfig({}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->history_size, 1000u);
  EXPECT_EQ(c->node_id, HostName());
  // A failed parse leaves nothing behind either.
  ASSERT_FALSE(ParseConfig({"--history_size=9", "--ping_interval=bad"}, {}).ok());
  c = ParseConfig({}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->history_size, 1000u);
}

TEST(ParseConfigTest, FlagfileWithCommentsAndBlankLines) {
  TempFile file(
      "# pushd settings\n"
      "\n"
      "--history_size=21\n"
      "   # indented comment\n"
      "  --history_ttl=2h  \n"
      "--node_id=from-file\n");
  const std::string& path = file.path();
  absl::StatusOr<Config> c = ParseConfig({"--flagfile=" + path}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->history_size, 21u);
  EXPECT_EQ(c->history_ttl, absl::Hours(2));
  EXPECT_EQ(c->node_id, "from-file");

  // A flag after the flagfile on the command line overrides the file.
  c = ParseConfig({"--flagfile", path, "--node_id=later"}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->history_size, 21u);
  EXPECT_EQ(c->node_id, "later");
}

TEST(ParseConfigTest, FlagfileFromEnvironment) {
  TempFile file("--history_size=33\n");
  const std::string& path = file.path();
  absl::StatusOr<Config> c = ParseConfig({}, Env{{"PUSHD_FLAGFILE", path}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->history_size, 33u);
}

TEST(ParseConfigTest, MissingFlagfileNamesThePath) {
  absl::StatusOr<Config> c = ParseConfig({"--flagfile=/nonexistent/pushd.flags"}, {});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(c.status(), "/nonexistent/pushd.flags"));
}

TEST(ParseConfigTest, BadValueInFlagfileNamesTheFlag) {
  TempFile file("--history_size=lots\n");
  const std::string& path = file.path();
  absl::StatusOr<Config> c = ParseConfig({"--flagfile=" + path}, {});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(c.status(), "--history_size"));
}

TEST(ParseConfigTest, BadValuesGiveOneLineErrorsNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string flag;
  };
  const Case cases[] = {
      {{"--history_size=abc"}, "--history_size"},
      {{"--history_size=-1"}, "--history_size"},
      {{"--history_size=0"}, "--history_size"},
      {{"--ping_interval=20"}, "--ping_interval"},  // no unit
      {{"--ping_interval=soon"}, "--ping_interval"},
      {{"--pong_timeout=-5s"}, "--pong_timeout"},
      {{"--history_ttl=0s"}, "--history_ttl"},
      {{"--drain_timeout=0"}, "--drain_timeout"},
      {{"--max_message_bytes=0"}, "--max_message_bytes"},
      {{"--max_message_bytes=1k"}, "--max_message_bytes"},
      {{"--send_queue_bytes=10"}, "--send_queue_bytes"},
      {{"--grpc_listen=localhost"}, "--grpc_listen"},
      {{"--ws_listen=0.0.0.0:99999"}, "--ws_listen"},
      {{"--ws_listen=:8080x"}, "--ws_listen"},
      {{"--role=both"}, "--role"},
      {{"--auth=basic"}, "--auth"},
      {{"--max_connections_per_user=-1"}, "--max_connections_per_user"},
      {{"--max_connections=lots"}, "--max_connections"},
      {{"--max_request_header_bytes=100"}, "--max_request_header_bytes"},
      {{"--max_request_header_bytes=4294967295"}, "--max_request_header_bytes"},
      {{"--handshake_timeout=0s"}, "--handshake_timeout"},
      {{"--handshake_timeout=10"}, "--handshake_timeout"},
      {{"--handshake_timeout=1h"}, "--handshake_timeout"},
  };
  for (const Case& tc : cases) {
    absl::StatusOr<Config> c = ParseConfig(tc.args, {});
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << tc.args[0];
    EXPECT_TRUE(MessageHas(c.status(), tc.flag)) << tc.args[0];
    EXPECT_EQ(std::string(c.status().message()).find('\n'), std::string::npos) << c.status();
  }
}

TEST(ParseConfigTest, BadEnvironmentValueNamesFlagAndVariable) {
  absl::StatusOr<Config> c = ParseConfig({}, Env{{"PUSHD_PING_INTERVAL", "fast"}});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(c.status(), "--ping_interval"));
  EXPECT_TRUE(MessageHas(c.status(), "PUSHD_PING_INTERVAL"));
}

TEST(ParseConfigTest, UnknownFlagIsAnError) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--no_such_flag=1"}, std::vector<std::string>{"--no_such_flag"},
        std::vector<std::string>{"--no_such_flag", "1"}}) {
    absl::StatusOr<Config> c = ParseConfig(args, {});
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << args[0];
    EXPECT_TRUE(MessageHas(c.status(), "unknown flag --no_such_flag"));
  }
}

TEST(ParseConfigTest, PositionalArgumentAndMissingValueAreErrors) {
  absl::StatusOr<Config> c = ParseConfig({"serve"}, {});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(c.status(), "serve"));

  c = ParseConfig({"--history_size"}, {});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(c.status(), "--history_size"));
}

TEST(ParseConfigTest, SplitRolesNeedRedis) {
  for (const char* role : {"api", "edge"}) {
    absl::StatusOr<Config> c = ParseConfig({std::string("--role=") + role}, {});
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << role;
    EXPECT_TRUE(MessageHas(c.status(), "--redis")) << role;
    EXPECT_TRUE(MessageHas(c.status(), role));
  }
  absl::StatusOr<Config> c = ParseConfig({"--role=all"}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->role, Role::kAll);
}

TEST(ParseConfigTest, GrpcHardeningFlags) {
  absl::StatusOr<Config> c = ParseConfig({}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->grpc_reflection);
  EXPECT_EQ(c->grpc_default_deadline, absl::Seconds(10));

  c = ParseConfig({"--grpc_reflection=false", "--grpc_default_deadline=1500ms"}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->grpc_reflection);
  EXPECT_EQ(c->grpc_default_deadline, absl::Milliseconds(1500));

  // Boolean spellings: --name, --noname, and the environment (as the Helm chart sets it).
  c = ParseConfig({"--nogrpc_reflection", "--node_id", "n1"}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->grpc_reflection);
  EXPECT_EQ(c->node_id, "n1");
  c = ParseConfig({"--grpc_reflection"}, Env{{"PUSHD_GRPC_REFLECTION", "false"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->grpc_reflection);
  c = ParseConfig({},
                  Env{{"PUSHD_GRPC_REFLECTION", "false"}, {"PUSHD_GRPC_DEFAULT_DEADLINE", "30s"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->grpc_reflection);
  EXPECT_EQ(c->grpc_default_deadline, absl::Seconds(30));

  for (const char* bad : {"--grpc_default_deadline=0s", "--grpc_default_deadline=-1s",
                          "--grpc_default_deadline=10", "--grpc_reflection=maybe"}) {
    c = ParseConfig({bad}, {});
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(MessageHas(c.status(), std::string(bad).substr(0, std::string(bad).find('='))))
        << bad;
  }
}

TEST(ParseConfigTest, TlsNeedsBothFilesWithPemThatOpenSslAccepts) {
  absl::StatusOr<Config> c = ParseConfig({"--tls_cert_file=/etc/hostname"}, {});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(c.status(), "--tls_key_file is missing"));
  c = ParseConfig({"--tls_key_file=/etc/hostname"}, {});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(c.status(), "--tls_cert_file is missing"));

  TempFile not_pem_file("hello\n");
  const std::string& not_pem = not_pem_file.path();
  c = ParseConfig({"--tls_cert_file=" + not_pem, "--tls_key_file=" + not_pem}, {});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(c.status(), "--tls_cert_file"));
  EXPECT_TRUE(MessageHas(c.status(), "no PEM certificate"));
  EXPECT_EQ(std::string(c.status().message()).find('\n'), std::string::npos) << c.status();
}

}  // namespace
}  // namespace push
