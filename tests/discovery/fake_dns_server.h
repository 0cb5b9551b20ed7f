// Test support: a DNS server on 127.0.0.1 (UDP, a port the kernel picks) that
// answers A, AAAA and TXT queries from a table, and counts what it is asked.
// Point a channel at it with "dns://" + server.authority() + "/name:port".
//
// It answers over UDP only (a resolver falls back to TCP only for a truncated
// answer, and its answers are kept under 512 bytes), with the question
// copied, AA set, TTL 1. A name in the table with no record of the asked type
// gets an empty answer (NOERROR, no data); a name not in the table NXDOMAIN.
#ifndef LBKIT_TESTS_DISCOVERY_FAKE_DNS_SERVER_H_
#define LBKIT_TESTS_DISCOVERY_FAKE_DNS_SERVER_H_

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace lbkit_test {

class FakeDnsServer {
 public:
  enum class Type { kA = 1, kTxt = 16, kAaaa = 28 };

  // Binds 127.0.0.1:0 and starts answering; fails the test if it cannot.
  FakeDnsServer();
  ~FakeDnsServer();  // stops, joins its thread

  int port() const { return port_; }
  // "127.0.0.1:<port>", for a target's authority.
  std::string authority() const { return "127.0.0.1:" + std::to_string(port_); }

  // Replaces the name's A (IPv4 text) or AAAA (IPv6 text) records; an empty
  // list keeps the name in the table with no record of that type. Names are
  // case-insensitive, without a trailing dot.
  void SetA(const std::string& name, std::vector<std::string> addresses);
  void SetAaaa(const std::string& name, std::vector<std::string> addresses);
  // Replaces the name's TXT records, each a list of strings (<= 255 bytes each).
  void SetTxt(const std::string& name, std::vector<std::vector<std::string>> records);
  // Takes the name out of the table: NXDOMAIN from now on.
  void Remove(const std::string& name);
  // While true, queries are counted and never answered (a DNS timeout).
  void SetSilent(bool silent) { silent_ = silent; }

  // How many queries of `type` for `name` arrived, answered or not.
  int Queries(const std::string& name, Type type) const;
  // When they arrived, in order.
  std::vector<std::chrono::steady_clock::time_point> QueryTimes(const std::string& name,
                                                                Type type) const;

 private:
  struct Records {
    std::vector<std::string> a;
    std::vector<std::string> aaaa;
    std::vector<std::vector<std::string>> txt;
  };
  void Serve();
  // The reply to `query`, or empty to send none (unreadable query).
  std::string Answer(const std::string& query);

  int socket_ = -1;
  int stop_[2] = {-1, -1};  // a pipe: writing to it stops Serve
  int port_ = 0;
  std::atomic<bool> silent_{false};
  mutable std::mutex mu_;
  std::map<std::string, Records> table_;
  std::map<std::pair<std::string, int>, std::vector<std::chrono::steady_clock::time_point>>
      queries_;
  std::thread thread_;
};

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_DISCOVERY_FAKE_DNS_SERVER_H_
