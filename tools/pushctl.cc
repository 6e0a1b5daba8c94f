// pushctl: the operator CLI for the PushService.
//   pushctl [OPTIONS] push --user alice --data '{"hello":1}' [--message_id ID] [--ttl SECONDS]
//   pushctl [OPTIONS] list [--user alice] [--page_size N]
//   pushctl [OPTIONS] delete --user alice [--connection ID] [--purge] [--reason TEXT]
// OPTIONS, before or after the command: --addr host:port (default
// 127.0.0.1:50051), --timeout seconds (default 10), --api_key_file FILE, and for a TLS server
// --tls_ca_file FILE (or --tls for the system roots) and --tls_server_name NAME. A command's own
// options go after it. Every option with a value is `--name VALUE` or `--name=VALUE`.

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "push/v1/push.grpc.pb.h"

namespace {

constexpr const char* kUsage =
    "usage: pushctl [OPTIONS] COMMAND [COMMAND OPTIONS] [OPTIONS]\n"
    "  pushctl push   --user ID --data JSON [--message_id ID] [--ttl SECONDS]\n"
    "  pushctl list   [--user ID] [--page_size N]\n"
    "  pushctl delete --user ID [--connection ID] [--purge] [--reason TEXT]\n"
    "OPTIONS (for every command, before or after it):\n"
    "  --addr HOST:PORT        the server (default 127.0.0.1:50051)\n"
    "  --timeout SECONDS       deadline of each call (default 10)\n"
    "  --api_key_file FILE     when pushd runs with --api_key_file\n"
    "  --tls_ca_file FILE      speak TLS, trusting the CA certificate(s) in FILE\n"
    "                          (PEM; for a self-signed server, its certificate)\n"
    "  --tls                   speak TLS, trusting the system's CA certificates\n"
    "  --tls_server_name NAME  the name the server's certificate must carry\n"
    "                          (default: the host of --addr)\n"
    "A command's own options go after the command. Options with a value are written\n"
    "--name VALUE or --name=VALUE.\n"
    "example: pushctl --addr 127.0.0.1:50052 push --user alice --data '{\"hi\":1}'\n";

// Every option: whether it takes a value, and the commands it belongs to (nullptr: every
// command, and it may come before the command too).
struct OptionSpec {
  const char* name;
  bool has_value;
  const char* commands;
};
constexpr OptionSpec kOptions[] = {
    {"addr", true, nullptr},
    {"timeout", true, nullptr},
    {"api_key_file", true, nullptr},
    {"tls_ca_file", true, nullptr},
    {"tls", false, nullptr},
    {"tls_server_name", true, nullptr},
    {"user", true, "push list delete"},
    {"data", true, "push"},
    {"message_id", true, "push"},
    {"ttl", true, "push"},
    {"page_size", true, "list"},
    {"connection", true, "delete"},
    {"purge", false, "delete"},
    {"reason", true, "delete"},
};
constexpr const char* kCommands[] = {"push", "list", "delete"};

const OptionSpec* FindOption(const std::string& name) {
  for (const OptionSpec& o : kOptions) {
    if (name == o.name) return &o;
  }
  return nullptr;
}

bool BelongsTo(const OptionSpec& option, const std::string& command) {
  if (option.commands == nullptr) return true;
  std::istringstream words(option.commands);
  for (std::string word; words >> word;) {
    if (word == command) return true;
  }
  return false;
}

int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "pushctl: %s\n", error.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

int Fail(const grpc::Status& status) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  int code = status.error_code();
  const char* name = code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
  std::fprintf(stderr, "pushctl: %s: %s\n", name, status.error_message().c_str());
  return 1;
}

std::string FormatTime(const google::protobuf::Timestamp& ts) {
  std::time_t t = static_cast<std::time_t>(ts.seconds());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool ParseUint(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("");
  // The command is the first argument that is neither an option nor an option's value; the
  // common options may come before or after it, the command's own options only after it.
  std::string command;
  std::map<std::string, std::string> opts;
  bool purge = false;
  bool tls = false;
  std::vector<std::string> early;  // command options seen before the command
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h" || (command.empty() && arg == "help")) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg.rfind("-", 0) != 0 || arg == "-") {
      if (!command.empty()) {
        return Usage("unexpected argument '" + arg + "' after the command '" + command +
                     "' (options are --name VALUE or --name=VALUE)");
      }
      if (std::find(std::begin(kCommands), std::end(kCommands), arg) == std::end(kCommands)) {
        return Usage("unknown command '" + arg + "' (push, list or delete)");
      }
      command = arg;
      if (!early.empty()) {
        const std::string& name = early.front();
        if (!BelongsTo(*FindOption(name), command)) {
          return Usage("--" + name + " is not an option of '" + command + "'");
        }
        return Usage("--" + name + " is an option of '" + command +
                     "', not a common one: put it after the command (pushctl [OPTIONS] " + command +
                     " --" + name + " ...)");
      }
      continue;
    }
    if (arg.rfind("--", 0) != 0) return Usage("unknown option " + arg + " (options start with --)");
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const OptionSpec* option = FindOption(name);
    if (option == nullptr) return Usage("unknown option --" + name);
    if (!option->has_value) {
      if (value) return Usage("--" + name + " takes no value");
    } else if (!value) {
      if (i + 1 >= argc) return Usage("--" + name + " needs a value");
      value = argv[++i];
    }
    if (command.empty()) {
      if (option->commands != nullptr) early.push_back(name);
    } else if (!BelongsTo(*option, command)) {
      return Usage("--" + name + " is not an option of '" + command + "'");
    }
    if (name == "purge") {
      purge = true;
    } else if (name == "tls") {
      tls = true;
    } else {
      opts[name] = *value;
    }
  }
  if (command.empty()) {
    if (!early.empty()) return Usage("--" + early.front() + " needs a command before it");
    return Usage("no command (push, list or delete)");
  }
  std::string addr = opts.count("addr") ? opts["addr"] : "127.0.0.1:50051";
  uint64_t timeout_s = 10;
  if (opts.count("timeout") && !ParseUint(opts["timeout"], &timeout_s)) {
    return Usage("--timeout must be a number of seconds");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments channel_args;
  if (tls || opts.count("tls_ca_file") || opts.count("tls_server_name")) {
    grpc::SslCredentialsOptions ssl;
    if (opts.count("tls_ca_file")) {
      std::ifstream in(opts["tls_ca_file"]);
      std::stringstream content;
      content << in.rdbuf();
      ssl.pem_root_certs = content.str();
      if (!in || ssl.pem_root_certs.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
        return Usage("--tls_ca_file '" + opts["tls_ca_file"] +
                     "' is not a readable PEM certificate file");
      }
    }
    credentials = grpc::SslCredentials(ssl);
    if (opts.count("tls_server_name")) {
      channel_args.SetSslTargetNameOverride(opts["tls_server_name"]);
    }
  }
  auto stub =
      push::v1::PushService::NewStub(grpc::CreateCustomChannel(addr, credentials, channel_args));
  std::string api_key;
  if (opts.count("api_key_file")) {
    std::ifstream in(opts["api_key_file"]);
    if (!in) return Usage("cannot read --api_key_file '" + opts["api_key_file"] + "'");
    std::stringstream content;
    content << in.rdbuf();
    api_key = content.str();
    while (!api_key.empty() && std::isspace(static_cast<unsigned char>(api_key.back()))) {
      api_key.pop_back();
    }
    while (!api_key.empty() && std::isspace(static_cast<unsigned char>(api_key.front()))) {
      api_key.erase(0, 1);
    }
  }
  auto new_context = [timeout_s, &api_key] {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!api_key.empty()) ctx->AddMetadata("authorization", "Bearer " + api_key);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
    return ctx;
  };

  if (command == "push") {
    if (!opts.count("user")) return Usage("push needs --user");
    if (!opts.count("data")) return Usage("push needs --data (a JSON value)");
    push::v1::PushRequest req;
    req.set_user_id(opts["user"]);
    req.set_data(opts["data"]);
    if (opts.count("message_id")) req.set_message_id(opts["message_id"]);
    if (opts.count("ttl")) {
      uint64_t ttl = 0;
      if (!ParseUint(opts["ttl"], &ttl) || ttl > UINT32_MAX) {
        return Usage("--ttl must be a number of seconds");
      }
      req.set_ttl_seconds(static_cast<uint32_t>(ttl));
    }
    push::v1::PushResponse res;
    grpc::Status status = stub->Push(new_context().get(), req, &res);
    if (!status.ok()) return Fail(status);
    std::printf("pushed message_id=%s seq=%llu delivered=%u%s\n", res.message_id().c_str(),
                static_cast<unsigned long long>(res.seq()), res.delivered(),
                res.delivered() == 0 ? " (stored until the user connects)" : "");
    return 0;
  }
  if (command == "list") {
    push::v1::ListClientsRequest req;
    if (opts.count("user")) req.set_user_id(opts["user"]);
    if (opts.count("page_size")) {
      uint64_t size = 0;
      if (!ParseUint(opts["page_size"], &size) || size > UINT32_MAX) {
        return Usage("--page_size must be a number");
      }
      req.set_page_size(static_cast<uint32_t>(size));
    }
    std::printf("%-24s %-22s %-16s %-22s %-20s %8s %8s\n", "USER", "CONNECTION", "NODE", "REMOTE",
                "CONNECTED", "SENT", "QUEUED");
    uint64_t total = 0;
    do {
      push::v1::ListClientsResponse res;
      grpc::Status status = stub->ListClients(new_context().get(), req, &res);
      if (!status.ok()) return Fail(status);
      for (const auto& c : res.clients()) {
        std::printf("%-24s %-22s %-16s %-22s %-20s %8llu %8llu\n", c.user_id().c_str(),
                    c.connection_id().c_str(), c.node_id().c_str(), c.remote_address().c_str(),
                    FormatTime(c.connected_at()).c_str(),
                    static_cast<unsigned long long>(c.messages_sent()),
                    static_cast<unsigned long long>(c.queued_bytes()));
      }
      total = res.total();
      req.set_page_token(res.next_page_token());
    } while (!req.page_token().empty());
    std::printf("total: %llu connection(s)\n", static_cast<unsigned long long>(total));
    return 0;
  }
  if (command == "delete") {
    if (!opts.count("user")) return Usage("delete needs --user");
    push::v1::DeleteClientRequest req;
    req.set_user_id(opts["user"]);
    if (opts.count("connection")) req.set_connection_id(opts["connection"]);
    if (opts.count("reason")) req.set_reason(opts["reason"]);
    req.set_purge(purge);
    push::v1::DeleteClientResponse res;
    grpc::Status status = stub->DeleteClient(new_context().get(), req, &res);
    if (!status.ok()) return Fail(status);
    std::printf("closed %u connection(s)%s\n", res.closed(),
                purge ? "; stored messages purged" : "");
    return 0;
  }
  return Usage("unknown command '" + command + "'");
}
