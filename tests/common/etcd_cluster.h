// Test support: a real etcd cluster (Debian's etcd-server) on loopback, on
// ports the kernel picked, with its data in a temporary directory that is
// removed at the end. Members can be killed, stopped and started again on
// the same ports and data, to test clients that must follow them.
//
// A test that needs etcd fails (never skips) when etcd is not installed:
// scripts/install-deps.sh installs it. No GoogleTest here: lbkit-bench's
// discovery scenario runs its etcd with this too.
#ifndef LBKIT_TESTS_COMMON_ETCD_CLUSTER_H_
#define LBKIT_TESTS_COMMON_ETCD_CLUSTER_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include <grpcpp/support/status.h>

namespace lbkit_test {

// Runs `argv` (looked up in PATH) with stdout and stderr appended to
// `log_path` and `env` ("NAME=value") added; the child dies with the test
// process. Returns its pid, or -1.
pid_t SpawnProcess(const std::vector<std::string>& argv, const std::string& log_path,
                   const std::vector<std::string>& env = {});

class EtcdCluster {
 public:
  // Starts `members` members and waits (up to 30 s) until the cluster has a
  // leader and serves reads. On failure ok() is false and error() says why
  // (with the tail of the member's log); tests ASSERT_TRUE(cluster.ok()).
  explicit EtcdCluster(int members = 1);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  int size() const { return static_cast<int>(members_.size()); }

  // "127.0.0.1:P1,127.0.0.1:P2,...": the authority of an etcd:// target.
  std::string client_endpoints() const;
  // "127.0.0.1:P" of member `i`.
  std::string client_endpoint(int i) const;
  // "etcd://<all members>/<service>".
  std::string Target(const std::string& service) const;

  // SIGKILL, as a crash. Returns once the process is gone.
  void Kill(int i);
  // SIGTERM, then waits for the process to exit.
  void Stop(int i);
  // SIGSTOP / SIGCONT: a member that keeps its connections open and never
  // answers, then answers again.
  void Freeze(int i);
  void Thaw(int i);
  // Starts member `i` again with its ports and data; waits until it serves
  // (up to 30 s). Returns whether it did.
  bool Restart(int i);
  bool running(int i) const { return members_[i].pid > 0; }
  // The index of the member that is leader, or -1 when none answers so.
  int Leader();

  // Client operations, through a plain gRPC channel to a running member.
  grpc::Status Put(const std::string& key, const std::string& value, int64_t lease = 0);
  grpc::Status Delete(const std::string& key);
  // The values of the keys under `prefix`, by key order, and the lease
  // each is attached to (0: none).
  grpc::Status List(const std::string& prefix, std::vector<std::string>* keys,
                    std::vector<std::string>* values = nullptr,
                    std::vector<int64_t>* leases = nullptr);
  // The store's current revision, or -1 on error.
  int64_t Revision();
  // Compacts the history up to the current revision.
  grpc::Status Compact();
  // Runs etcdctl with `args` against the cluster; returns its exit status.
  int Etcdctl(const std::vector<std::string>& args);

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    std::string log_path;
    pid_t pid = -1;
  };
  bool StartMember(int i, bool initial);
  bool WaitServing(int i, int timeout_ms);
  std::string LogTail(int i) const;
  int AnyRunning() const;

  std::string dir_;
  std::string initial_cluster_;
  std::string token_;
  std::vector<Member> members_;
  std::string error_;
};

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_COMMON_ETCD_CLUSTER_H_
