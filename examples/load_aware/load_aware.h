// load_aware: the second worked example of docs/writing-a-policy.md, written
// against lbkit's installed public headers only. It uses what the resolver
// says about each endpoint (its weight attribute) and what each backend says
// about itself after every call (the load report in the call's trailers).
//
// One pick_first child per endpoint (EndpointSharding). A call goes to a READY
// endpoint chosen at random with probability proportional to
//     weight * (1 - utilization)
// where `weight` is the endpoint's weight attribute (static target
// "host:port;weight=3") and `utilization` the last one its backend reported
// (lbkit::LoadReport, clamped to [0, 0.95] so that a busy backend still gets a
// trickle and can report that it recovered). A backend that has not reported
// counts as idle. Each pick adds the header "x-load-aware-weight" with the
// weight it used, which the backend can log.
//
// Config: {"metric": "cpu"} (default), "application", or the name of a named
// metric ("named:queue_depth"). Unknown fields are ignored, as in every lbkit
// policy; a known field of the wrong type is an error.
#ifndef LBKIT_EXAMPLES_LOAD_AWARE_H_
#define LBKIT_EXAMPLES_LOAD_AWARE_H_

#include <memory>
#include <string>

#include <grpcpp/support/status.h>
#include <lbkit/lbkit.h>

namespace load_aware {

class LoadAwareConfig final : public lbkit::BalancerConfig {
 public:
  enum class Metric { kCpu, kApplication, kNamed };
  Metric metric = Metric::kCpu;
  std::string named_metric;  // for kNamed
};

class LoadAwareBuilder final : public lbkit::BalancerBuilder {
 public:
  std::string name() const override { return "load_aware"; }
  grpc::Status ParseConfig(const nlohmann::json& json,
                           std::shared_ptr<const lbkit::BalancerConfig>* config) const override;
  std::unique_ptr<lbkit::Balancer> Build(lbkit::Helper* helper) const override;
};

// Registers load_aware. Returns ALREADY_EXISTS if it already is (harmless:
// the same builder), or another registry error.
[[nodiscard]] grpc::Status RegisterLoadAware();

}  // namespace load_aware

#endif  // LBKIT_EXAMPLES_LOAD_AWARE_H_
