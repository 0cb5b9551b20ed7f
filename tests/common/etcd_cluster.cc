#include "common/etcd_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "discovery/etcd_common.h"
#include "etcd/rpc.grpc.pb.h"

namespace lbkit_test {
namespace {

// Ports the kernel picks for 127.0.0.1, all held until every one is chosen
// so that none is picked twice, then released for etcd to bind.
std::vector<int> PickPorts(size_t count) {
  std::vector<int> fds;
  std::vector<int> ports;
  for (size_t i = 0; i < count; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (fd >= 0) close(fd);
      break;
    }
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) close(fd);
  return ports;
}

}  // namespace

pid_t SpawnProcess(const std::vector<std::string>& argv, const std::string& log_path,
                   const std::vector<std::string>& env) {
  // Everything the child needs is built here: after fork() in a process with
  // other threads (gRPC's, a registrar's) the child may only make
  // async-signal-safe calls; a malloc there (putenv, vector growth) can
  // deadlock on a lock another thread held at the fork, and the test hangs.
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<char*> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) environment.push_back(*entry);
  for (const std::string& entry : env) environment.push_back(const_cast<char*>(entry.c_str()));
  environment.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
  }
  execvpe(args[0], args.data(), environment.data());
  _exit(127);
}

namespace {

// A channel that retries a refused connection within 100 ms, not after
// gRPC's default backoff of 1 s and more: members start in well under that.
std::shared_ptr<grpc::Channel> MemberChannel(const std::string& endpoint) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<etcdserverpb::KV::Stub> KvStub(const std::string& endpoint) {
  return etcdserverpb::KV::NewStub(MemberChannel(endpoint));
}

// Polls `condition` every 5 ms until it holds or `timeout_ms` passes (this
// file is also linked into lbkit-bench, without the test support library).
bool PollUntil(const std::function<bool()>& condition, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void SetDeadline(grpc::ClientContext* context, int ms) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
}

}  // namespace

EtcdCluster::EtcdCluster(int members) {
  char dir[] = "/tmp/lbkit-etcd-XXXXXX";
  if (mkdtemp(dir) == nullptr) {
    error_ = "mkdtemp failed";
    return;
  }
  dir_ = dir;
  std::random_device random;
  token_ = "lbkit-test-" + std::to_string(random());
  // A port picked here can be taken by someone else before etcd binds it:
  // then that member fails to start, and the whole cluster is tried again
  // on fresh ports.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::vector<int> ports = PickPorts(2 * static_cast<size_t>(members));
    if (ports.size() != 2 * static_cast<size_t>(members)) {
      error_ = "could not pick loopback ports";
      return;
    }
    members_.clear();
    initial_cluster_.clear();
    for (int i = 0; i < members; ++i) {
      Member member;
      member.name = "m" + std::to_string(i);
      member.client_port = ports[2 * i];
      member.peer_port = ports[2 * i + 1];
      member.data_dir = dir_ + "/" + member.name + "-attempt" + std::to_string(attempt);
      member.log_path = dir_ + "/" + member.name + ".log";
      if (!initial_cluster_.empty()) initial_cluster_ += ",";
      initial_cluster_ += member.name + "=http://127.0.0.1:" + std::to_string(member.peer_port);
      members_.push_back(member);
    }
    error_.clear();
    bool started = true;
    for (int i = 0; i < members && started; ++i) started = StartMember(i, true);
    for (int i = 0; i < members && started; ++i) {
      if (!WaitServing(i, 30000)) {
        started = false;
        error_ = "etcd member " + std::to_string(i) + " did not serve within 30 s; its log:\n" +
                 LogTail(i);
      }
    }
    if (started) return;
    for (int i = 0; i < members; ++i) Kill(i);
  }
}

EtcdCluster::~EtcdCluster() {
  for (int i = 0; i < size(); ++i) Kill(i);
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

bool EtcdCluster::StartMember(int i, bool initial) {
  Member& member = members_[i];
  std::string client_url = "http://127.0.0.1:" + std::to_string(member.client_port);
  std::string peer_url = "http://127.0.0.1:" + std::to_string(member.peer_port);
  std::vector<std::string> argv = {
      "etcd",
      "--name=" + member.name,
      "--data-dir=" + member.data_dir,
      "--listen-client-urls=" + client_url,
      "--advertise-client-urls=" + client_url,
      "--listen-peer-urls=" + peer_url,
      "--initial-advertise-peer-urls=" + peer_url,
      "--initial-cluster=" + initial_cluster_,
      "--initial-cluster-token=" + token_,
      std::string("--initial-cluster-state=") + (initial ? "new" : "existing"),
      // Faster elections than the defaults (100 ms / 1 s): a killed leader
      // is replaced in well under a second.
      "--heartbeat-interval=50",
      "--election-timeout=500",
      "--logger=zap",
      "--log-level=warn",
  };
  member.pid = SpawnProcess(argv, member.log_path);
  if (member.pid < 0) {
    error_ = "could not start etcd (is etcd-server installed? scripts/install-deps.sh)";
    return false;
  }
  return true;
}

bool EtcdCluster::WaitServing(int i, int timeout_ms) {
  auto stub = KvStub(client_endpoint(i));
  return PollUntil(
             [&] {
               if (members_[i].pid <= 0) return false;
               int status = 0;
               if (waitpid(members_[i].pid, &status, WNOHANG) == members_[i].pid) {
                 members_[i].pid = -1;  // exited: a port taken, or etcd missing
                 return false;
               }
               grpc::ClientContext context;
               SetDeadline(&context, 1000);
               etcdserverpb::RangeRequest request;
               request.set_key("lbkit-health");
               context.set_wait_for_ready(true);
               etcdserverpb::RangeResponse response;
               return stub->Range(&context, request, &response).ok();
             },
             timeout_ms) &&
         members_[i].pid > 0;
}

std::string EtcdCluster::LogTail(int i) const {
  std::ifstream in(members_[i].log_path);
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  if (all.empty()) return "(empty; etcd not installed? run scripts/install-deps.sh)";
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

std::string EtcdCluster::client_endpoint(int i) const {
  return "127.0.0.1:" + std::to_string(members_[i].client_port);
}

std::string EtcdCluster::client_endpoints() const {
  std::string all;
  for (int i = 0; i < size(); ++i) all += (i == 0 ? "" : ",") + client_endpoint(i);
  return all;
}

std::string EtcdCluster::Target(const std::string& service) const {
  return "etcd://" + client_endpoints() + "/" + service;
}

void EtcdCluster::Kill(int i) {
  Member& member = members_[i];
  if (member.pid <= 0) return;
  kill(member.pid, SIGKILL);
  waitpid(member.pid, nullptr, 0);
  member.pid = -1;
}

void EtcdCluster::Stop(int i) {
  Member& member = members_[i];
  if (member.pid <= 0) return;
  kill(member.pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (waitpid(member.pid, nullptr, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(member.pid, SIGKILL);
      waitpid(member.pid, nullptr, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  member.pid = -1;
}

void EtcdCluster::Freeze(int i) {
  if (members_[i].pid > 0) kill(members_[i].pid, SIGSTOP);
}

void EtcdCluster::Thaw(int i) {
  if (members_[i].pid > 0) kill(members_[i].pid, SIGCONT);
}

bool EtcdCluster::Restart(int i) {
  if (members_[i].pid > 0) return true;
  // The data directory exists: etcd rejoins with it, whatever the state flag.
  if (!StartMember(i, false)) return false;
  return WaitServing(i, 30000);
}

int EtcdCluster::AnyRunning() const {
  for (int i = 0; i < size(); ++i) {
    if (members_[i].pid > 0) return i;
  }
  return -1;
}

int EtcdCluster::Leader() {
  std::map<uint64_t, int> index_of;
  uint64_t leader = 0;
  for (int i = 0; i < size(); ++i) {
    if (members_[i].pid <= 0) continue;
    auto stub = etcdserverpb::Maintenance::NewStub(MemberChannel(client_endpoint(i)));
    grpc::ClientContext context;
    SetDeadline(&context, 2000);
    etcdserverpb::StatusResponse response;
    if (!stub->Status(&context, etcdserverpb::StatusRequest(), &response).ok()) continue;
    index_of[response.header().member_id()] = i;
    if (response.leader() != 0) leader = response.leader();
  }
  auto found = index_of.find(leader);
  return found == index_of.end() ? -1 : found->second;
}

grpc::Status EtcdCluster::Put(const std::string& key, const std::string& value, int64_t lease) {
  int i = AnyRunning();
  if (i < 0) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no etcd member running");
  grpc::ClientContext context;
  SetDeadline(&context, 5000);
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  etcdserverpb::PutResponse response;
  return KvStub(client_endpoint(i))->Put(&context, request, &response);
}

grpc::Status EtcdCluster::Delete(const std::string& key) {
  int i = AnyRunning();
  if (i < 0) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no etcd member running");
  grpc::ClientContext context;
  SetDeadline(&context, 5000);
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  etcdserverpb::DeleteRangeResponse response;
  return KvStub(client_endpoint(i))->DeleteRange(&context, request, &response);
}

grpc::Status EtcdCluster::List(const std::string& prefix, std::vector<std::string>* keys,
                               std::vector<std::string>* values, std::vector<int64_t>* leases) {
  int i = AnyRunning();
  if (i < 0) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no etcd member running");
  grpc::ClientContext context;
  SetDeadline(&context, 5000);
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(lbkit::internal::PrefixRangeEnd(prefix));
  etcdserverpb::RangeResponse response;
  grpc::Status status = KvStub(client_endpoint(i))->Range(&context, request, &response);
  if (!status.ok()) return status;
  keys->clear();
  if (values != nullptr) values->clear();
  if (leases != nullptr) leases->clear();
  for (const auto& kv : response.kvs()) {
    keys->push_back(kv.key());
    if (values != nullptr) values->push_back(kv.value());
    if (leases != nullptr) leases->push_back(kv.lease());
  }
  return grpc::Status::OK;
}

int64_t EtcdCluster::Revision() {
  int i = AnyRunning();
  if (i < 0) return -1;
  grpc::ClientContext context;
  SetDeadline(&context, 5000);
  etcdserverpb::RangeRequest request;
  request.set_key("lbkit-revision");
  etcdserverpb::RangeResponse response;
  if (!KvStub(client_endpoint(i))->Range(&context, request, &response).ok()) return -1;
  return response.header().revision();
}

grpc::Status EtcdCluster::Compact() {
  int64_t revision = Revision();
  int i = AnyRunning();
  if (revision < 0 || i < 0) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no revision");
  grpc::ClientContext context;
  SetDeadline(&context, 5000);
  etcdserverpb::CompactionRequest request;
  request.set_revision(revision);
  request.set_physical(true);
  etcdserverpb::CompactionResponse response;
  return KvStub(client_endpoint(i))->Compact(&context, request, &response);
}

int EtcdCluster::Etcdctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"etcdctl", "--endpoints=" + client_endpoints()};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = SpawnProcess(argv, dir_ + "/etcdctl.log", {"ETCDCTL_API=3"});
  if (pid < 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace lbkit_test
