#include "lbkit/service_config.h"

#include <algorithm>
#include <cctype>
#include <exception>

#include <absl/strings/str_join.h>

#include "core/json_depth.h"
#include "core/method_config.h"
#include "core/shown_text.h"
#include "lbkit/registry.h"

namespace lbkit {
namespace {

using internal::JsonNestingDepth;
using internal::Shown;

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "invalid service config: " + message);
}

// [{"<name>": {}}]
nlohmann::json SinglePolicyList(const std::string& name) {
  nlohmann::json entry = nlohmann::json::object();
  entry[name] = nlohmann::json::object();
  return nlohmann::json::array({entry});
}

// gRPC's own JSON reader refuses nesting deeper than this; so does lbkit,
// before parsing, so that hostile input cannot exhaust the stack of the
// thread parsing it (one of lbkit's shared control-plane threads, usually)
// inside the JSON library.
constexpr int kMaxNestingDepth = 64;

std::string Join(const std::vector<std::string>& names) {
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

}  // namespace

grpc::Status ParseLoadBalancingConfig(const nlohmann::json& list, ServiceConfig* config) {
  if (!list.is_array()) return Invalid("loadBalancingConfig must be a list");
  std::vector<std::string> skipped;
  for (const nlohmann::json& entry : list) {
    if (!entry.is_object() || entry.size() != 1) {
      return Invalid("each loadBalancingConfig entry must be an object with exactly one key, got " +
                     Shown(entry.dump()));
    }
    const std::string& name = entry.begin().key();
    std::shared_ptr<const BalancerBuilder> builder = FindBalancer(name);
    if (builder == nullptr) {
      skipped.push_back(name);
      continue;
    }
    const nlohmann::json& policy_json = entry.begin().value();
    if (!policy_json.is_object()) {
      return Invalid("config of policy \"" + name + "\" must be an object, got " +
                     Shown(policy_json.dump()));
    }
    std::shared_ptr<const BalancerConfig> parsed;
    grpc::Status status;
    try {
      status = builder->ParseConfig(policy_json, &parsed);
    } catch (const std::exception& e) {
      // A policy's parser (nlohmann's at() on a missing key, say) must not
      // take the process down: the config comes from outside the program.
      return Invalid("policy \"" + name + "\": its config parser threw: " + Shown(e.what()));
    } catch (...) {
      return Invalid("policy \"" + name + "\": its config parser threw");
    }
    if (!status.ok()) {
      // A policy may quote its input: bounded and printable here too.
      return Invalid("policy \"" + name + "\": " + Shown(status.error_message(), 400));
    }
    if (parsed == nullptr) return Invalid("policy \"" + name + "\" returned no config");
    config->policy_name = name;
    config->config = std::move(parsed);
    return grpc::Status::OK;
  }
  // The skipped names are the input's own keys: quoted bounded.
  return Invalid("no registered policy in loadBalancingConfig (skipped: " + Shown(Join(skipped)) +
                 "; registered: " + Shown(Join(RegisteredBalancers()), 400) + ")");
}

grpc::Status ParseServiceConfig(const std::string& json, ServiceConfig* config) {
  nlohmann::json root;
  if (json.find_first_not_of(" \t\r\n") == std::string::npos) {
    root = nlohmann::json::object();
  } else {
    static_assert(kMaxNestingDepth == kMaxServiceConfigDepth, "one limit, documented publicly");
    if (json.size() > kMaxServiceConfigBytes) {
      return Invalid(std::to_string(json.size()) + " bytes, over the limit of " +
                     std::to_string(kMaxServiceConfigBytes) + " (kMaxServiceConfigBytes)");
    }
    if (JsonNestingDepth(json, kMaxNestingDepth) > kMaxNestingDepth) {
      return Invalid("nested deeper than " + std::to_string(kMaxNestingDepth) + " levels");
    }
    root = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) return Invalid("not valid JSON: " + Shown(json));
  }
  if (!root.is_object()) return Invalid("must be a JSON object, got " + Shown(root.dump()));
  ServiceConfig parsed;
  auto health = root.find("healthCheckConfig");
  if (health != root.end()) {
    if (!health->is_object()) return Invalid("healthCheckConfig must be an object");
    auto name = health->find("serviceName");
    if (name != health->end() && !name->is_string()) {
      return Invalid("healthCheckConfig.serviceName must be a string, got " + Shown(name->dump()));
    }
    parsed.health_check = true;
    parsed.health_check_service = name == health->end() ? "" : name->get<std::string>();
  }
  grpc::Status status = internal::ParseMethodConfig(root, &parsed.method_config, &parsed.warnings);
  if (!status.ok()) return status;
  for (const auto& [key, value] : root.items()) {
    (void)value;
    if (key != "loadBalancingConfig" && key != "loadBalancingPolicy" &&
        key != "healthCheckConfig" && key != "methodConfig" && key != "retryThrottling") {
      // gRPC ignores fields it does not know; lbkit says so (service-config.md).
      parsed.warnings.push_back("field \"" + Shown(key) + "\" is not supported and is ignored");
    }
  }
  auto lb_config = root.find("loadBalancingConfig");
  auto lb_policy = root.find("loadBalancingPolicy");  // gRPC's older form
  if (lb_config != root.end()) {
    status = ParseLoadBalancingConfig(*lb_config, &parsed);
  } else if (lb_policy != root.end()) {
    if (!lb_policy->is_string()) return Invalid("loadBalancingPolicy must be a string");
    std::string name = lb_policy->get<std::string>();
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    status = ParseLoadBalancingConfig(SinglePolicyList(name), &parsed);
  } else {
    status = ParseLoadBalancingConfig(SinglePolicyList("pick_first"), &parsed);
  }
  if (!status.ok()) return status;
  *config = std::move(parsed);
  return grpc::Status::OK;
}

}  // namespace lbkit
