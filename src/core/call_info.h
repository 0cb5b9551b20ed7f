// Per-call information between the channel and a policy's picker: the check
// of metadata a picker attaches to a call (PickResult::AddMetadata).
// CallDoneInfo (picker.h) is implemented in call_info.cc too.
#ifndef LBKIT_SRC_CORE_CALL_INFO_H_
#define LBKIT_SRC_CORE_CALL_INFO_H_

#include <string>
#include <utility>
#include <vector>

#include <grpcpp/support/status.h>

namespace lbkit {
namespace internal {

// OK if gRPC would send every entry; otherwise INTERNAL naming the first bad
// key and why. gRPC aborts the process on metadata it cannot send, so a
// picker's entries must pass this before they reach a ClientContext.
grpc::Status CheckPickMetadata(const std::vector<std::pair<std::string, std::string>>& metadata);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_CALL_INFO_H_
