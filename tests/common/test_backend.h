// Test support: real echo backends on ephemeral loopback ports, and waiting
// on conditions with deadlines.
#ifndef LBKIT_TESTS_COMMON_TEST_BACKEND_H_
#define LBKIT_TESTS_COMMON_TEST_BACKEND_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <grpcpp/server.h>

#include "echo.grpc.pb.h"
#include "echo_service.h"

namespace lbkit_test {

// An echo server on 127.0.0.1 whose replies end "(from 127.0.0.1:<port>)".
// Can be stopped and started again on the same port.
class TestBackend {
 public:
  // Starts on a port the kernel picks.
  TestBackend();
  // A backend that is not running yet; its port was free when chosen.
  static std::unique_ptr<TestBackend> Reserved();
  ~TestBackend();

  // Starts (again) on port(); fails the test if the port cannot be bound.
  void Start();
  // Stops at once, cancelling calls in flight.
  void Stop();
  bool running() const { return server_ != nullptr; }
  int port() const { return port_; }
  const std::string& address() const { return address_; }

 private:
  explicit TestBackend(int port);
  lbkit_example::EchoService service_{""};
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
};

// Polls `condition` until it holds or `timeout` passes. Returns whether it held.
bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// One UnaryEcho call; returns the reply or "error: <code>: <message>".
std::string Echo(grpc::examples::echo::Echo::Stub& stub, const std::string& message,
                 std::chrono::milliseconds timeout = std::chrono::seconds(5),
                 bool wait_for_ready = false);

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
