// ring_hash: consistent hashing over endpoints (gRFC A42), with the request
// hash taken from a call header (gRFC A76's requestHashHeader). A call whose
// header value is the same always goes to the same endpoint while that
// endpoint can take it; removing an endpoint moves only the calls that hashed
// to it. Endpoints connect lazily: only when a call lands on them (or when the
// policy must find some endpoint that works). docs/policies.md (ring_hash)
// describes the config and the behaviour.
#ifndef LBKIT_SRC_POLICIES_RING_HASH_H_
#define LBKIT_SRC_POLICIES_RING_HASH_H_

#include <cstdint>
#include <memory>
#include <string>

#include "lbkit/balancer.h"

namespace lbkit {
namespace internal {

// A42: neither ring size may exceed 8M entries; larger values are capped.
constexpr uint64_t kRingHashSizeCap = 8388608;

// ring_hash's parsed config (visible here for its tests).
class RingHashConfig final : public BalancerConfig {
 public:
  uint64_t min_ring_size = 1024;
  uint64_t max_ring_size = kRingHashSizeCap;
  // Lowercase (gRPC's metadata keys are). Empty: a random hash per call.
  std::string request_hash_header;
};

std::shared_ptr<const BalancerBuilder> MakeRingHashBuilder();

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_POLICIES_RING_HASH_H_
