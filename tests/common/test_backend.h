// Test support: real echo backends on ephemeral loopback ports, and waiting
// on conditions with deadlines.
#ifndef LBKIT_TESTS_COMMON_TEST_BACKEND_H_
#define LBKIT_TESTS_COMMON_TEST_BACKEND_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/server.h>

#include "echo.grpc.pb.h"
#include "echo_service.h"

namespace lbkit_test {

// An echo server on 127.0.0.1 whose replies end "(from 127.0.0.1:<port>)".
// Can be stopped and started again on the same port.
class TestBackend {
 public:
  // Starts on a port the kernel picks. With `health`, it serves
  // grpc.health.v1.Health (SERVING); without, that service is UNIMPLEMENTED.
  explicit TestBackend(bool health = true);
  // A backend that is not running yet. Its port stays reserved (bound by a
  // socket that does not listen, so connections to it are refused) until
  // Start: no other backend, reserved or started, gets it meanwhile.
  static std::unique_ptr<TestBackend> Reserved();
  // A backend started on `port` (one this test owned and released).
  static std::unique_ptr<TestBackend> StartOn(int port);
  ~TestBackend();

  // Starts (again) on port(); fails the test if the port cannot be bound.
  void Start();
  // Stops at once, cancelling calls in flight.
  void Stop();
  bool running() const { return server_ != nullptr; }
  // Sets the health status reported for "" and grpc.examples.echo.Echo.
  void SetServing(bool serving);
  int port() const { return port_; }
  const std::string& address() const { return address_; }

 private:
  TestBackend(int port, bool health);
  lbkit_example::EchoService service_{""};
  bool health_ = true;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  int reservation_ = -1;  // the socket holding port_ until Start
};

// Polls `condition` until it holds or `timeout` passes. Returns whether it held.
bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// One UnaryEcho call; returns the reply or "error: <code>: <message>".
std::string Echo(grpc::examples::echo::Echo::Stub& stub, const std::string& message,
                 std::chrono::milliseconds timeout = std::chrono::seconds(5),
                 bool wait_for_ready = false);

// A loopback TCP port that never completes a connection: it listens, but its
// accept queue is full, so further connects hang (SYN dropped) until they time
// out. What a host that never answers looks like.
class BlackholeListener {
 public:
  BlackholeListener();
  ~BlackholeListener();
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int listener_ = -1;
  std::vector<int> fillers_;
  int port_ = 0;
};

// A loopback TCP port that accepts each connection and closes it at once, and
// counts them: every gRPC connection attempt to it fails, visibly.
class ClosingListener {
 public:
  ClosingListener();
  ~ClosingListener();  // stops listening
  void Close();        // stops listening now (the port can be reused)
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  int accepted() const { return accepted_.load(); }

 private:
  int listener_ = -1;
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// Collects lbkit's trace (all flags) and log lines while it lives.
class TraceRecorder {
 public:
  TraceRecorder();
  ~TraceRecorder();
  std::vector<std::string> Lines() const;
  // Lines containing every one of `parts`.
  int Count(const std::vector<std::string>& parts) const;

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

}  // namespace lbkit_test

#endif  // LBKIT_TESTS_COMMON_TEST_BACKEND_H_

#include <grpcpp/completion_queue.h>

#include "lbkit/channel.h"

namespace lbkit_test {

// A channel to `addresses` ("static:///...") with `service_config` as its
// default config.
std::shared_ptr<lbkit::Channel> StaticChannel(const std::vector<std::string>& addresses,
                                              const std::string& service_config);
// A channel served by `resolver` ("manual:///").
std::shared_ptr<lbkit::Channel> ManualChannel(std::shared_ptr<lbkit::ManualResolver> resolver);
// Shuts `cq` down and drains it.
void ShutdownAndDrain(grpc::CompletionQueue& cq);
// Waits until the channel has `n` READY subchannels.
bool WaitForReadySubchannels(lbkit::Channel& channel, size_t n,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10));
// Waits until the channel's state is `state`, through WaitForStateChange.
bool WaitForChannelState(lbkit::Channel& channel, grpc_connectivity_state state,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace lbkit_test
