#include "common/test_backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <thread>

#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

namespace lbkit_test {

TestBackend::TestBackend(bool health) : TestBackend(0, health) { Start(); }

TestBackend::TestBackend(int port, bool health) : health_(health), port_(port) {}

std::unique_ptr<TestBackend> TestBackend::Reserved() {
  // Releasing a port a started server had bound let the kernel hand it out
  // again: two reserved backends could share an address.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "cannot reserve a loopback port: " << std::strerror(errno);
    if (fd >= 0) close(fd);
    return std::make_unique<TestBackend>();
  }
  std::unique_ptr<TestBackend> backend(new TestBackend(ntohs(addr.sin_port), true));
  backend->reservation_ = fd;
  backend->address_ = "127.0.0.1:" + std::to_string(backend->port_);
  backend->service_.set_label(backend->address_);
  return backend;
}

std::unique_ptr<TestBackend> TestBackend::StartOn(int port) {
  std::unique_ptr<TestBackend> backend(new TestBackend(port, true));
  backend->Start();
  return backend;
}

TestBackend::~TestBackend() {
  Stop();
  if (reservation_ >= 0) close(reservation_);
}

void TestBackend::Start() {
  if (server_ != nullptr) return;
  if (reservation_ >= 0) {
    close(reservation_);
    reservation_ = -1;
  }
  std::string error;
  int bound = 0;
  // A port just released may take a moment to be free again.
  for (int attempt = 0; attempt < 50 && server_ == nullptr; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    server_ = lbkit_example::StartEchoServer("127.0.0.1:" + std::to_string(port_), &service_,
                                             &bound, &error, health_);
  }
  ASSERT_NE(server_, nullptr) << error;
  port_ = bound;
  address_ = "127.0.0.1:" + std::to_string(port_);
  service_.set_label(address_);
}

void TestBackend::SetServing(bool serving) {
  ASSERT_NE(server_, nullptr);
  lbkit_example::SetServing(*server_, serving);
}

void TestBackend::Stop() {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string Echo(grpc::examples::echo::Echo::Stub& stub, const std::string& message,
                 std::chrono::milliseconds timeout, bool wait_for_ready) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  context.set_wait_for_ready(wait_for_ready);
  grpc::examples::echo::EchoRequest request;
  request.set_message(message);
  grpc::examples::echo::EchoResponse response;
  grpc::Status status = stub.UnaryEcho(&context, request, &response);
  if (!status.ok()) {
    return "error: " + std::to_string(status.error_code()) + ": " + status.error_message();
  }
  return response.message();
}

}  // namespace lbkit_test

#include <grpcpp/security/credentials.h>

namespace lbkit_test {

std::shared_ptr<lbkit::Channel> StaticChannel(const std::vector<std::string>& addresses,
                                              const std::string& service_config) {
  std::string target = "static:///";
  for (size_t i = 0; i < addresses.size(); ++i) target += (i ? "," : "") + addresses[i];
  lbkit::ChannelOptions options;
  options.default_service_config = service_config;
  grpc::Status status;
  auto channel = lbkit::CreateChannel(target, grpc::InsecureChannelCredentials(), options, &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return channel;
}

std::shared_ptr<lbkit::Channel> ManualChannel(std::shared_ptr<lbkit::ManualResolver> resolver) {
  lbkit::ChannelOptions options;
  options.resolver = std::move(resolver);
  return lbkit::CreateChannel("manual:///", grpc::InsecureChannelCredentials(), options);
}

void ShutdownAndDrain(grpc::CompletionQueue& cq) {
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

bool WaitForReadySubchannels(lbkit::Channel& channel, size_t n, std::chrono::milliseconds timeout) {
  return WaitFor(
      [&] {
        size_t ready = 0;
        for (const auto& subchannel : channel.Snapshot().subchannels) {
          if (subchannel.state == lbkit::ConnectivityState::kReady) ++ready;
        }
        return ready >= n;
      },
      timeout);
}

bool WaitForChannelState(lbkit::Channel& channel, grpc_connectivity_state state,
                         std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::system_clock::now() + timeout;
  grpc_connectivity_state current = channel.GetState(true);
  while (current != state) {
    if (!channel.WaitForStateChange(current, deadline)) return false;
    current = channel.GetState(true);
  }
  return true;
}

}  // namespace lbkit_test

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/trace.h"

namespace lbkit_test {
namespace {

// A listening socket on 127.0.0.1:0; returns its fd and sets *port.
int Listen(int backlog, int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), length) != 0 ||
      listen(fd, backlog) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    ADD_FAILURE() << "cannot listen on 127.0.0.1:0";
    return fd;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

BlackholeListener::BlackholeListener() {
  listener_ = Listen(0, &port_);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port_));
  // Fill the accept queue; nothing ever accepts.
  for (int i = 0; i < 3; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    fillers_.push_back(fd);
  }
}

BlackholeListener::~BlackholeListener() {
  for (int fd : fillers_) close(fd);
  close(listener_);
}

ClosingListener::ClosingListener() {
  listener_ = Listen(16, &port_);
  thread_ = std::thread([this] {
    for (;;) {
      int fd = accept(listener_, nullptr, nullptr);
      if (fd < 0) return;  // closed
      accepted_.fetch_add(1);
      close(fd);
    }
  });
}

ClosingListener::~ClosingListener() { Close(); }

void ClosingListener::Close() {
  if (listener_ < 0) return;
  shutdown(listener_, SHUT_RDWR);  // wakes accept()
  thread_.join();
  close(listener_);
  listener_ = -1;
}

TraceRecorder::TraceRecorder() {
  lbkit::internal::SetTraceForTesting(~0u, [this](const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.push_back(line);
  });
}

TraceRecorder::~TraceRecorder() { lbkit::internal::SetTraceForTesting(0, nullptr); }

std::vector<std::string> TraceRecorder::Lines() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lines_;
}

int TraceRecorder::Count(const std::vector<std::string>& parts) const {
  int count = 0;
  for (const std::string& line : Lines()) {
    bool all = true;
    for (const std::string& part : parts) all = all && line.find(part) != std::string::npos;
    if (all) ++count;
  }
  return count;
}

}  // namespace lbkit_test
