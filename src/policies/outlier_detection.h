// outlier_detection (gRFC A50): wraps a child policy and watches how the calls
// it places end. Each `interval` it compares endpoints (success-rate and/or
// failure-percentage ejection) and ejects outliers: their subchannels look
// TRANSIENT_FAILURE to the child, which so stops sending them calls, until
// base_ejection_time * (times ejected recently) has passed.
//
// Tracked per endpoint (its set of addresses, EndpointKey), as gRPC does since
// gRFC A61: every subchannel of an endpoint's addresses is ejected together.
// Calls are counted per address and added up per endpoint at each sweep: a
// subchannel belongs to whichever endpoint lists its address after the latest
// update (as gRPC C-core re-points its wrappers); one for an address no
// endpoint lists is never ejected, and its calls count for no endpoint.
#ifndef LBKIT_SRC_POLICIES_OUTLIER_DETECTION_H_
#define LBKIT_SRC_POLICIES_OUTLIER_DETECTION_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "lbkit/balancer.h"

namespace lbkit {
namespace internal {

std::shared_ptr<const BalancerBuilder> MakeOutlierDetectionBuilder();

// The parsed config, A50's defaults in place. Durations are kept to the
// nanosecond, as protobuf's Duration is; timers round them up to milliseconds.
class OutlierDetectionConfig final : public BalancerConfig {
 public:
  struct SuccessRateEjection {
    uint32_t stdev_factor = 1900;  // thousandths: 1900 is 1.9 standard deviations
    uint32_t enforcement_percentage = 100;
    uint32_t minimum_hosts = 5;
    uint32_t request_volume = 100;
  };
  struct FailurePercentageEjection {
    uint32_t threshold = 85;
    uint32_t enforcement_percentage = 100;
    uint32_t minimum_hosts = 5;
    uint32_t request_volume = 50;
  };

  std::chrono::nanoseconds interval = std::chrono::seconds(10);
  std::chrono::nanoseconds base_ejection_time = std::chrono::seconds(30);
  // max(300s, base_ejection_time) when the config does not say.
  std::chrono::nanoseconds max_ejection_time = std::chrono::seconds(300);
  uint32_t max_ejection_percent = 10;
  std::optional<SuccessRateEjection> success_rate_ejection;
  std::optional<FailurePercentageEjection> failure_percentage_ejection;
  std::string child_policy;  // the first registered entry of childPolicy
  std::shared_ptr<const BalancerConfig> child_config;

  // A50: with neither algorithm, calls are not counted and nothing is ejected.
  bool counting() const {
    return success_rate_ejection.has_value() || failure_percentage_ejection.has_value();
  }
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_POLICIES_OUTLIER_DETECTION_H_
