// Duration fields of policy configs: protobuf's JSON form of
// google.protobuf.Duration ("10s", "0.5s"), shared by the policies that take
// them (outlier_detection, weighted_round_robin) so that they accept, bound
// and word errors about the same strings the same way.
#ifndef LBKIT_SRC_POLICIES_DURATION_H_
#define LBKIT_SRC_POLICIES_DURATION_H_

#include <chrono>

#include <grpcpp/support/status.h>
#include <nlohmann/json.hpp>

namespace lbkit {
namespace internal {

// Longer durations behave as this one (100 years). Time arithmetic on the
// steady clock (int64 nanoseconds, about 292 years) then cannot overflow: a
// timer set for protobuf's largest Duration would otherwise wrap around to
// the past, fire at once and re-arm forever.
constexpr std::chrono::nanoseconds kLongestDuration = std::chrono::hours(24 * 365 * 100);

// Reads the optional field `name` of `json`: "<seconds>s" or
// "<seconds>.<1 to 9 digits>s", not negative, at most protobuf's own bound
// of 315,576,000,000 seconds (10,000 years); anything longer than
// kLongestDuration becomes kLongestDuration. Leaves `*out` unchanged when the
// field is absent; INVALID_ARGUMENT naming the field and its value otherwise.
grpc::Status ParseDurationField(const nlohmann::json& json, const char* name,
                                std::chrono::nanoseconds* out);

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_POLICIES_DURATION_H_
