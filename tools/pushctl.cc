// pushctl: the operator CLI for the PushService.
//   pushctl [OPTIONS] push --user alice --data '{"hello":1}' [--message_id ID] [--ttl SECONDS]
//   pushctl [OPTIONS] list [--user alice] [--page_size N]
//   pushctl [OPTIONS] delete --user alice [--connection ID] [--purge] [--reason TEXT]
//   pushctl [OPTIONS] receipts --user alice (--id ID | --seq N)     (--message_id = --id)
//   pushctl [OPTIONS] watch [--user alice]... [--after CURSOR] [--count K]
// OPTIONS, before or after the command: --addr host:port (default
// 127.0.0.1:50051), --timeout seconds (default 10), --api_key_file FILE, and for a TLS server
// --tls_ca_file FILE (or --tls for the system roots) and --tls_server_name NAME. A command's own
// options go after it. Every option with a value is `--name VALUE` or `--name=VALUE`.
// For watch, --timeout bounds the whole watch (default: none, until interrupted).

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "push/v1/push.grpc.pb.h"

namespace {

constexpr const char* kUsage =
    "usage: pushctl [OPTIONS] COMMAND [COMMAND OPTIONS] [OPTIONS]\n"
    "  pushctl push   --user ID --data JSON [--message_id ID] [--ttl SECONDS]\n"
    "  pushctl list   [--user ID] [--page_size N]\n"
    "  pushctl delete --user ID [--connection ID] [--purge] [--reason TEXT]\n"
    "  pushctl receipts --user ID (--id MESSAGE_ID | --seq N)\n"
    "                          which devices of the user got the message, and acked it\n"
    "  pushctl watch  [--user ID]... [--after CURSOR] [--count K]\n"
    "                          presence events (all users, or the --user ones), one line\n"
    "                          each; --after resumes after an event's cursor, --count\n"
    "                          stops after K events\n"
    "OPTIONS (for every command, before or after it):\n"
    "  --addr HOST:PORT        the server (default 127.0.0.1:50051)\n"
    "  --timeout SECONDS       deadline of each call (default 10); for watch, how long\n"
    "                          to watch (default: until interrupted)\n"
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
    {"user", true, "push list delete receipts watch"},
    {"data", true, "push"},
    {"message_id", true, "push receipts"},
    {"id", true, "receipts"},
    {"seq", true, "receipts"},
    {"after", true, "watch"},
    {"count", true, "watch"},
    {"ttl", true, "push"},
    {"page_size", true, "list"},
    {"connection", true, "delete"},
    {"purge", false, "delete"},
    {"reason", true, "delete"},
};
constexpr const char* kCommands[] = {"push", "list", "delete", "receipts", "watch"};
constexpr const char* kCommandList = "push, list, delete, receipts or watch";

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

const char* CodeName(grpc::StatusCode code) {
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
  int n = static_cast<int>(code);
  return n >= 0 && n <= 16 ? kNames[n] : "UNKNOWN";
}

int Fail(const grpc::Status& status) {
  std::fprintf(stderr, "pushctl: %s: %s\n", CodeName(status.error_code()),
               status.error_message().c_str());
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

// An event's time, to the millisecond: 2024-05-01T12:00:00.123Z.
std::string FormatTimeMillis(const google::protobuf::Timestamp& ts) {
  std::string s = FormatTime(ts);
  char millis[8];
  std::snprintf(millis, sizeof(millis), ".%03dZ", ts.nanos() / 1000000);
  return s.substr(0, s.size() - 1) + millis;
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

int Receipts(push::v1::PushService::Stub& stub, std::map<std::string, std::string>& opts,
             std::unique_ptr<grpc::ClientContext> context) {
  if (!opts.count("user")) return Usage("receipts needs --user");
  if (opts.count("id") && opts.count("message_id")) {
    return Usage("--id and --message_id are the same option: give one");
  }
  std::string id = opts.count("id")           ? opts["id"]
                   : opts.count("message_id") ? opts["message_id"]
                                              : "";
  bool by_id = opts.count("id") || opts.count("message_id");
  bool by_seq = opts.count("seq") > 0;
  if (by_id == by_seq) {
    return Usage(by_id ? "receipts takes --id or --seq, not both"
                       : "receipts needs the message: --id MESSAGE_ID or --seq N");
  }
  if (by_id && id.empty()) return Usage("--id must not be empty");
  push::v1::GetReceiptsRequest req;
  req.set_user_id(opts["user"]);
  if (by_id) req.set_message_id(id);
  if (by_seq) {
    uint64_t seq = 0;
    if (!ParseUint(opts["seq"], &seq) || seq == 0) {
      return Usage("--seq must be a positive number (a message's seq)");
    }
    req.set_seq(seq);
  }
  push::v1::GetReceiptsResponse res;
  grpc::Status status = stub.GetReceipts(context.get(), req, &res);
  if (!status.ok()) return Fail(status);
  std::printf("seq=%llu receipts=%d%s\n", static_cast<unsigned long long>(res.seq()),
              res.receipts_size(), res.receipts_size() == 0 ? " (no device has it yet)" : "");
  if (res.receipts_size() == 0) return 0;
  std::printf("%-24s %-8s %10s\n", "DEVICE", "STATE", "CURSOR");
  for (const auto& r : res.receipts()) {
    std::printf("%-24s %-8s %10llu\n",
                r.device_id().empty() ? "(no device)" : r.device_id().c_str(),
                push::v1::Receipt::State_Name(r.state()).c_str(),
                static_cast<unsigned long long>(r.cursor()));
  }
  return 0;
}

// The N of "... after=N" in a status message (RESOURCE_EXHAUSTED, UNAVAILABLE), if any.
std::optional<uint64_t> ResumeCursor(const std::string& message) {
  size_t at = message.rfind("after=");
  if (at == std::string::npos) return std::nullopt;
  size_t start = at + 6, end = start;
  while (end < message.size() && message[end] >= '0' && message[end] <= '9') ++end;
  uint64_t cursor = 0;
  if (!ParseUint(message.substr(start, end - start), &cursor)) return std::nullopt;
  return cursor;
}

// WatchPresence until --count events, the --timeout, the end of the stream, an error or a
// signal. Events go to stdout (flushed line by line), everything else to stderr, ending with
// where to resume (--after N).
int Watch(push::v1::PushService::Stub& stub, std::map<std::string, std::string>& opts,
          const std::vector<std::string>& users, uint64_t timeout_s, const std::string& api_key) {
  push::v1::WatchPresenceRequest req;
  for (const std::string& user : users) req.add_user_ids(user);
  if (opts.count("after")) {
    uint64_t after = 0;
    if (!ParseUint(opts["after"], &after)) return Usage("--after must be an event's cursor");
    req.set_after(after);
  }
  uint64_t count = 0;
  if (opts.count("count") && (!ParseUint(opts["count"], &count) || count == 0)) {
    return Usage("--count must be a positive number of events");
  }
  // Shared with the signal thread, which may outlive this function (it waits until exit).
  auto context_owner = std::make_shared<grpc::ClientContext>();
  auto signalled = std::make_shared<std::atomic<int>>(0);
  grpc::ClientContext& context = *context_owner;
  if (!api_key.empty()) context.AddMetadata("authorization", "Bearer " + api_key);
  if (timeout_s > 0) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s));
  }
  // A signal (blocked in every thread since before the channel) cancels the call.
  std::thread([context_owner, signalled] {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    int sig = 0;
    if (sigwait(&signals, &sig) == 0) {
      signalled->store(sig);
      context_owner->TryCancel();
    }
  }).detach();

  std::unique_ptr<grpc::ClientReader<push::v1::PresenceEvent>> reader =
      stub.WatchPresence(&context, req);
  // The server sends its initial metadata once the watch is live: from here on no event is
  // missed. It carries the cursor the watch starts after.
  reader->WaitForInitialMetadata();
  bool live = false;
  uint64_t last = req.after();
  const auto& metadata = context.GetServerInitialMetadata();
  if (auto it = metadata.find("presence-cursor"); it != metadata.end()) {
    uint64_t cursor = 0;
    if (ParseUint(std::string(it->second.data(), it->second.size()), &cursor)) {
      live = true;
      last = cursor;
      std::fprintf(stderr, "watching after cursor %llu\n", static_cast<unsigned long long>(cursor));
      std::printf("%-8s %-12s %-24s %-22s %-16s %-16s %-24s %s\n", "CURSOR", "KIND", "USER",
                  "CONNECTION", "DEVICE", "NODE", "AT", "REASON");
      std::fflush(stdout);
    }
  }
  auto or_dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  uint64_t seen = 0;
  push::v1::PresenceEvent e;
  while (reader->Read(&e)) {
    live = true;
    last = e.cursor();
    std::string kind = push::v1::PresenceEvent::Kind_Name(e.kind());
    if (kind.empty()) kind = std::to_string(static_cast<int>(e.kind()));
    std::printf("%-8llu %-12s %-24s %-22s %-16s %-16s %-24s %s\n",
                static_cast<unsigned long long>(e.cursor()), kind.c_str(),
                or_dash(e.user_id()).c_str(), or_dash(e.connection_id()).c_str(),
                or_dash(e.device_id()).c_str(), or_dash(e.node_id()).c_str(),
                FormatTimeMillis(e.at()).c_str(), or_dash(e.reason()).c_str());
    std::fflush(stdout);
    if (count > 0 && ++seen >= count) {
      context.TryCancel();
      while (reader->Read(&e)) {
      }
      reader->Finish();
      std::fprintf(stderr, "pushctl: stopped after %llu event(s); resume with --after %llu\n",
                   static_cast<unsigned long long>(seen), static_cast<unsigned long long>(last));
      return 0;
    }
  }
  grpc::Status status = reader->Finish();
  auto resume = [&](uint64_t cursor) {
    std::fprintf(stderr, "pushctl: resume with --after %llu\n",
                 static_cast<unsigned long long>(cursor));
  };
  if (int sig = signalled->load(); sig != 0) {
    std::fprintf(stderr, "pushctl: stopped by %s; resume with --after %llu\n",
                 sig == SIGINT    ? "SIGINT"
                 : sig == SIGTERM ? "SIGTERM"
                                  : "SIGHUP",
                 static_cast<unsigned long long>(last));
    return 0;
  }
  if (status.ok()) {
    std::fprintf(stderr, "pushctl: the server ended the watch; resume with --after %llu\n",
                 static_cast<unsigned long long>(last));
    return 0;
  }
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && live) {
    if (count == 0) {  // watching for --timeout seconds is what was asked
      std::fprintf(stderr, "pushctl: watched for %llu s; resume with --after %llu\n",
                   static_cast<unsigned long long>(timeout_s),
                   static_cast<unsigned long long>(last));
      return 0;
    }
    std::fprintf(stderr, "pushctl: DEADLINE_EXCEEDED: %llu of %llu event(s) within %llu s\n",
                 static_cast<unsigned long long>(seen), static_cast<unsigned long long>(count),
                 static_cast<unsigned long long>(timeout_s));
    resume(last);
    return 1;
  }
  Fail(status);
  if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
      status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    // The server says where to resume (the last event it sent); without that, our last one.
    if (std::optional<uint64_t> after = ResumeCursor(status.error_message())) {
      resume(*after);
    } else if (live) {
      resume(last);
    }
  }
  return 1;
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
  std::vector<std::string> users;  // every --user, in order (watch takes several)
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
        return Usage("unknown command '" + arg + "' (" + kCommandList + ")");
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
      if (name == "user") users.push_back(*value);  // watch takes several
      opts[name] = *value;
    }
  }
  if (command.empty()) {
    if (!early.empty()) return Usage("--" + early.front() + " needs a command before it");
    return Usage(std::string("no command (") + kCommandList + ")");
  }
  std::string addr = opts.count("addr") ? opts["addr"] : "127.0.0.1:50051";
  uint64_t timeout_s = 10;
  if (opts.count("timeout") && !ParseUint(opts["timeout"], &timeout_s)) {
    return Usage("--timeout must be a number of seconds");
  }
  if (command == "watch") {
    // Interrupting a watch ends it cleanly, saying where to resume: the signals are taken by a
    // thread (WatchPresence below), so block them before gRPC starts threads of its own (the
    // credentials already do).
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
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
  if (command == "receipts") return Receipts(*stub, opts, new_context());
  if (command == "watch") {
    if (!opts.count("timeout")) timeout_s = 0;
    return Watch(*stub, opts, users, timeout_s, api_key);
  }
  return Usage("unknown command '" + command + "'");
}
