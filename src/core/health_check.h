// Client-side health checking (gRFC A17) and connection-error probing for
// one subchannel's grpc::Channel, through gRPC's generic async API on lbkit's
// own completion queue (io_loop.h), never on gRPC's shared callback threads.
//
// The two grpc.health.v1 messages are encoded by hand (a string field out, an
// enum field back) rather than compiled from health.proto: a library that
// embedded its own copy of health.proto would clash with an application that
// compiles it too.
#ifndef LBKIT_SRC_CORE_HEALTH_CHECK_H_
#define LBKIT_SRC_CORE_HEALTH_CHECK_H_

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

namespace lbkit {
namespace internal {

// grpc.health.v1.HealthCheckResponse.ServingStatus.
enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };
const char* ToString(ServingStatus status);

// HealthCheckRequest{service} in protobuf wire format.
std::string EncodeHealthCheckRequest(const std::string& service);
// The status field of a HealthCheckResponse; false if `bytes` is malformed.
bool DecodeHealthCheckResponse(const std::string& bytes, ServingStatus* status);

// One Health/Watch stream. Callbacks run on the IoLoop thread, never after
// on_done. Cancel() is thread-safe and idempotent.
class HealthWatch {
 public:
  using StatusCallback = std::function<void(ServingStatus)>;
  using DoneCallback = std::function<void(const grpc::Status&)>;

  static std::shared_ptr<HealthWatch> Start(const std::shared_ptr<grpc::Channel>& channel,
                                            const std::string& service, StatusCallback on_status,
                                            DoneCallback on_done);
  virtual ~HealthWatch() = default;
  virtual void Cancel() = 0;
};

// Set while lbkit creates a call of its own on a subchannel's connection
// (the health watch, the connection-error probe), on that thread: the
// application's interceptors (ChannelOptions::interceptor_factories) skip it.
inline thread_local bool creating_internal_call = false;

// Asks a channel in TRANSIENT_FAILURE why: a call on it fails at once with
// gRPC's last connection error. `done` receives that error (on the IoLoop thread).
void ProbeConnectionError(const std::shared_ptr<grpc::Channel>& channel,
                          std::function<void(const grpc::Status&)> done);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_HEALTH_CHECK_H_
