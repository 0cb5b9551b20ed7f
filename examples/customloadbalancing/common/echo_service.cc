#include "echo_service.h"

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

namespace lbkit_example {

using grpc::examples::echo::EchoRequest;
using grpc::examples::echo::EchoResponse;

std::string EchoService::Reply(const std::string& message) const {
  return message + " (from " + label_ + ")";
}

grpc::Status EchoService::UnaryEcho(grpc::ServerContext* context, const EchoRequest* request,
                                    EchoResponse* response) {
  OnCall(context);
  response->set_message(Reply(request->message()));
  return grpc::Status::OK;
}

grpc::Status EchoService::ServerStreamingEcho(grpc::ServerContext* context,
                                              const EchoRequest* request,
                                              grpc::ServerWriter<EchoResponse>* writer) {
  OnCall(context);
  EchoResponse response;
  response.set_message(Reply(request->message()));
  for (int i = 0; i < 3; ++i) {
    if (!writer->Write(response)) break;
  }
  return grpc::Status::OK;
}

grpc::Status EchoService::ClientStreamingEcho(grpc::ServerContext* context,
                                              grpc::ServerReader<EchoRequest>* reader,
                                              EchoResponse* response) {
  OnCall(context);
  EchoRequest request;
  std::string last;
  int count = 0;
  while (reader->Read(&request)) {
    last = request.message();
    ++count;
  }
  response->set_message(last + " x" + std::to_string(count) + " (from " + label_ + ")");
  return grpc::Status::OK;
}

grpc::Status EchoService::BidirectionalStreamingEcho(
    grpc::ServerContext* context, grpc::ServerReaderWriter<EchoResponse, EchoRequest>* stream) {
  OnCall(context);
  EchoRequest request;
  while (stream->Read(&request)) {
    EchoResponse response;
    response.set_message(Reply(request.message()));
    if (!stream->Write(response)) break;
  }
  return grpc::Status::OK;
}

std::unique_ptr<grpc::Server> StartEchoServer(const std::string& address, grpc::Service* service,
                                              int* port, std::string* error, bool health) {
  // Read by the builder below, at BuildAndStart.
  grpc::EnableDefaultHealthCheckService(health);
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int bound = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound == 0) {
    if (error != nullptr) {
      *error = "cannot listen on " + address + " (is the port in use, or the address invalid?)";
    }
    if (server != nullptr) server->Shutdown();
    return nullptr;
  }
  if (port != nullptr) *port = bound;
  if (health) SetServing(*server, true);
  return server;
}

void SetServing(grpc::Server& server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);
  health->SetServingStatus("grpc.examples.echo.Echo", serving);
}

HostPort SplitHostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return {address, ""};
  return {address.substr(0, colon), address.substr(colon + 1)};
}

std::string WithPort(const std::string& address, int port) {
  return SplitHostPort(address).host + ":" + std::to_string(port);
}

}  // namespace lbkit_example
