// The echo service the example server runs (also used by lbkit's tests and
// benchmark): every reply says which address served it.
//
//   UnaryEcho                   "<message> (from <label>)"
//   ServerStreamingEcho         that reply three times
//   ClientStreamingEcho         "<last message> x<count> (from <label>)"
//   BidirectionalStreamingEcho  one reply per message, as UnaryEcho
#ifndef LBKIT_EXAMPLES_ECHO_SERVICE_H_
#define LBKIT_EXAMPLES_ECHO_SERVICE_H_

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/server.h>

#include "echo.grpc.pb.h"

namespace lbkit_example {

class EchoService final : public grpc::examples::echo::Echo::Service {
 public:
  explicit EchoService(std::string label) : label_(std::move(label)) {}

  grpc::Status UnaryEcho(grpc::ServerContext* context,
                         const grpc::examples::echo::EchoRequest* request,
                         grpc::examples::echo::EchoResponse* response) override;
  grpc::Status ServerStreamingEcho(
      grpc::ServerContext* context, const grpc::examples::echo::EchoRequest* request,
      grpc::ServerWriter<grpc::examples::echo::EchoResponse>* writer) override;
  grpc::Status ClientStreamingEcho(grpc::ServerContext* context,
                                   grpc::ServerReader<grpc::examples::echo::EchoRequest>* reader,
                                   grpc::examples::echo::EchoResponse* response) override;
  grpc::Status BidirectionalStreamingEcho(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::examples::echo::EchoResponse,
                               grpc::examples::echo::EchoRequest>* stream) override;

  void set_label(std::string label) { label_ = std::move(label); }
  const std::string& label() const { return label_; }
  // Runs in every call's handler, before the call's status is sent: where a
  // server adds trailing metadata (lbkit-echo-server --report-load adds a
  // load report). Must be thread-safe; set before the server starts.
  using CallHook = std::function<void(grpc::ServerContext* context)>;
  void set_call_hook(CallHook hook) { call_hook_ = std::move(hook); }

 private:
  std::string Reply(const std::string& message) const;
  void OnCall(grpc::ServerContext* context) const {
    if (call_hook_) call_hook_(context);
  }
  std::string label_;
  CallHook call_hook_;
};

// A server for `service` on `address` (port 0 picks one), with SO_REUSEPORT
// off so that a port in use is an error. With `health`, it also serves the
// standard grpc.health.v1.Health service, SERVING for "" and for
// grpc.examples.echo.Echo (see SetServing). Returns null and sets *error on
// failure; otherwise sets *port to the bound port.
std::unique_ptr<grpc::Server> StartEchoServer(const std::string& address, grpc::Service* service,
                                              int* port, std::string* error, bool health = true);

// Sets the health of `server` (started with health) for "" and for
// grpc.examples.echo.Echo.
void SetServing(grpc::Server& server, bool serving);

// "host:port" split at its last ':': "[::1]:50050" gives "[::1]" and
// "50050"; text without ':' is all host, with an empty port. (lbkit checks
// addresses itself; the example needs only to tell its servers apart.)
struct HostPort {
  std::string host;
  std::string port;
};
HostPort SplitHostPort(const std::string& address);

// "host:port" with the port replaced: ("127.0.0.1:0", 4242) -> "127.0.0.1:4242".
std::string WithPort(const std::string& address, int port);

}  // namespace lbkit_example

#endif  // LBKIT_EXAMPLES_ECHO_SERVICE_H_
