#include "core/method_config.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>

#include <grpc/support/time.h>

#include "core/shown_text.h"
#include "core/trace.h"
#include "policies/duration.h"

namespace lbkit {
namespace internal {
namespace {

grpc::Status Invalid(const std::string& where, const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "invalid service config: " + where + ": " + message);
}

// gRPC's status code names, by code.
constexpr const char* kCodeNames[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};
constexpr int kCodeCount = sizeof(kCodeNames) / sizeof(kCodeNames[0]);

// A whole number field: a JSON number or, as protobuf's JSON mapping allows
// for integers, a string of digits. False when it is neither.
bool ReadInteger(const nlohmann::json& value, int64_t* out) {
  if (value.is_number_unsigned()) {  // may exceed int64_t: every limit here is far below
    const uint64_t n = value.get<uint64_t>();
    *out = n > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(n);
    return true;
  }
  if (value.is_number_integer()) {
    *out = value.get<int64_t>();
    return true;
  }
  if (value.is_number_float()) {
    double d = value.get<double>();
    if (std::floor(d) != d || std::fabs(d) > 1e15) return false;
    *out = static_cast<int64_t>(d);
    return true;
  }
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (text.empty() || text.size() > 15) return false;
    size_t i = text[0] == '-' ? 1 : 0;
    if (i == text.size()) return false;
    int64_t n = 0;
    for (; i < text.size(); ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      n = n * 10 + (text[i] - '0');
    }
    *out = text[0] == '-' ? -n : n;
    return true;
  }
  return false;
}

// A duration as gRPC's JSON reader takes it: "<seconds>.<9 digits>s".
// gRPC 1.51 reads a duration's seconds as an int: longer ones are capped.
std::string FormatDuration(std::chrono::nanoseconds d) {
  d = std::min<std::chrono::nanoseconds>(d, std::chrono::seconds(INT32_MAX));
  char text[48];
  std::snprintf(text, sizeof(text), "%lld.%09llds", static_cast<long long>(d.count() / 1000000000),
                static_cast<long long>(d.count() % 1000000000));
  return text;
}

// A required positive duration field of `object`.
grpc::Status PositiveDuration(const nlohmann::json& object, const char* name,
                              const std::string& where, std::chrono::nanoseconds* out) {
  if (object.find(name) == object.end()) return Invalid(where, std::string(name) + " is required");
  *out = std::chrono::nanoseconds(0);
  grpc::Status status = ParseDurationField(object, name, out);
  if (!status.ok()) return Invalid(where, status.error_message());
  if (out->count() <= 0) return Invalid(where, std::string(name) + " must be greater than 0");
  return grpc::Status::OK;
}

// retryPolicy (gRFC A6), rewritten for gRPC's own parser with the checks gRPC
// makes; fields gRPC 1.51 would not honour are warned about, not passed on.
grpc::Status ParseRetryPolicy(const nlohmann::json& policy, const std::string& where,
                              nlohmann::json* out, std::vector<std::string>* warnings) {
  if (!policy.is_object()) return Invalid(where, "must be an object, got " + Shown(policy.dump()));
  for (const auto& [key, value] : policy.items()) {
    (void)value;
    if (key != "maxAttempts" && key != "initialBackoff" && key != "maxBackoff" &&
        key != "backoffMultiplier" && key != "retryableStatusCodes") {
      warnings->push_back(where + ": field \"" + Shown(key) + "\" is not supported and is ignored");
    }
  }
  auto attempts = policy.find("maxAttempts");
  int64_t max_attempts = 0;
  if (attempts == policy.end()) return Invalid(where, "maxAttempts is required");
  if (!ReadInteger(*attempts, &max_attempts)) {
    return Invalid(where, "maxAttempts must be a whole number, got " + Shown(attempts->dump()));
  }
  if (max_attempts < 2) {
    return Invalid(where, "maxAttempts must be at least 2, got " + std::to_string(max_attempts));
  }
  // As gRPC does: more than 5 attempts are 5.
  if (max_attempts > 5) max_attempts = 5;
  std::chrono::nanoseconds initial, max;
  grpc::Status status = PositiveDuration(policy, "initialBackoff", where, &initial);
  if (!status.ok()) return status;
  status = PositiveDuration(policy, "maxBackoff", where, &max);
  if (!status.ok()) return status;
  auto multiplier = policy.find("backoffMultiplier");
  if (multiplier == policy.end()) return Invalid(where, "backoffMultiplier is required");
  if (!multiplier->is_number() || !(multiplier->get<double>() > 0)) {
    return Invalid(where, "backoffMultiplier must be a number greater than 0, got " +
                              Shown(multiplier->dump()));
  }
  auto codes = policy.find("retryableStatusCodes");
  if (codes == policy.end()) return Invalid(where, "retryableStatusCodes is required");
  if (!codes->is_array() || codes->empty()) {
    return Invalid(where,
                   "retryableStatusCodes must be a non-empty list, got " + Shown(codes->dump()));
  }
  nlohmann::json names = nlohmann::json::array();
  for (const nlohmann::json& code : *codes) {
    int found = -1;
    if (code.is_string()) {
      for (int i = 0; i < kCodeCount; ++i) {
        if (code.get_ref<const std::string&>() == kCodeNames[i]) found = i;
      }
    } else if (code.is_number_integer()) {
      int64_t n = code.get<int64_t>();
      if (n >= 0 && n < kCodeCount) found = static_cast<int>(n);
    }
    if (found < 0) {
      return Invalid(where, "retryableStatusCodes: " + Shown(code.dump()) +
                                " is not a status code name (such as \"UNAVAILABLE\") or number");
    }
    names.push_back(kCodeNames[found]);
  }
  *out = nlohmann::json::object();
  (*out)["maxAttempts"] = max_attempts;
  (*out)["initialBackoff"] = FormatDuration(initial);
  (*out)["maxBackoff"] = FormatDuration(max);
  (*out)["backoffMultiplier"] = multiplier->get<double>();
  (*out)["retryableStatusCodes"] = std::move(names);
  return grpc::Status::OK;
}

grpc::Status ParseMessageLimit(const nlohmann::json& value, const std::string& where,
                               const std::string& name, nlohmann::json* out) {
  int64_t bytes = 0;
  if (!ReadInteger(value, &bytes) || bytes < 0) {
    return Invalid(
        where, name + " must be a whole number of bytes, not negative, got " + Shown(value.dump()));
  }
  // gRPC keeps limits in an int: larger ones are no limit in practice.
  (*out)[name] = bytes > INT_MAX ? static_cast<int64_t>(INT_MAX) : bytes;
  return grpc::Status::OK;
}

grpc::Status ParseThrottling(const nlohmann::json& throttling, nlohmann::json* out,
                             std::vector<std::string>* warnings) {
  const std::string where = "retryThrottling";
  if (!throttling.is_object()) {
    return Invalid(where, "must be an object, got " + Shown(throttling.dump()));
  }
  for (const auto& [key, value] : throttling.items()) {
    (void)value;
    if (key != "maxTokens" && key != "tokenRatio") {
      warnings->push_back(where + ": field \"" + Shown(key) + "\" is not supported and is ignored");
    }
  }
  auto tokens = throttling.find("maxTokens");
  int64_t max_tokens = 0;
  if (tokens == throttling.end()) return Invalid(where, "maxTokens is required");
  if (!ReadInteger(*tokens, &max_tokens) || max_tokens <= 0) {
    return Invalid(where,
                   "maxTokens must be a whole number greater than 0, got " + Shown(tokens->dump()));
  }
  auto ratio = throttling.find("tokenRatio");
  if (ratio == throttling.end()) return Invalid(where, "tokenRatio is required");
  // gRPC keeps three decimal places of tokenRatio and refuses a ratio that
  // is 0 in thousandths; it also cannot read a number in exponent form, so
  // the ratio handed on is capped where that form would begin.
  const double milli = ratio->is_number() ? std::floor(ratio->get<double>() * 1000 + 1e-6) : 0;
  if (!(milli >= 1)) {
    return Invalid(where,
                   "tokenRatio must be a number of at least 0.001 (gRPC keeps 3 decimal "
                   "places), got " +
                       Shown(ratio->dump()));
  }
  *out = nlohmann::json::object();
  (*out)["maxTokens"] = max_tokens > 1000 ? 1000 : max_tokens;  // gRFC A6's upper bound
  (*out)["tokenRatio"] = std::min(milli, 1e9) / 1000;
  return grpc::Status::OK;
}

// One "name" entry's optional string field ("", null and absent are the same).
grpc::Status NameField(const nlohmann::json& name, const char* field, const std::string& where,
                       std::string* out) {
  auto it = name.find(field);
  if (it == name.end() || it->is_null()) return grpc::Status::OK;
  if (!it->is_string()) {
    return Invalid(where, std::string(field) + " must be a string, got " + Shown(it->dump()));
  }
  *out = it->get<std::string>();
  return grpc::Status::OK;
}

}  // namespace

const MethodSettings* MethodConfigTable::Find(std::string_view path) const {
  auto exact = by_name_.find(path);
  if (exact != by_name_.end()) return &settings_[exact->second];
  size_t slash = path.rfind('/');
  if (slash != std::string_view::npos && slash > 0) {
    auto service = by_name_.find(path.substr(0, slash + 1));
    if (service != by_name_.end()) return &settings_[service->second];
  }
  return default_ >= 0 ? &settings_[static_cast<size_t>(default_)] : nullptr;
}

grpc::Status ParseMethodConfig(const nlohmann::json& root,
                               std::shared_ptr<const MethodConfigTable>* table,
                               std::vector<std::string>* warnings) {
  auto list = root.find("methodConfig");
  auto throttling = root.find("retryThrottling");
  *table = nullptr;
  if (list == root.end() && throttling == root.end()) return grpc::Status::OK;
  auto built = std::make_shared<MethodConfigTable>();
  nlohmann::json grpc_entries = nlohmann::json::array();
  bool grpc_side = false;
  // Where each name was first given, for the duplicate error.
  std::map<std::string, std::string> named_at;
  if (list != root.end() && !list->is_null()) {
    if (!list->is_array()) {
      return Invalid("methodConfig", "must be a list, got " + Shown(list->dump()));
    }
    for (size_t i = 0; i < list->size(); ++i) {
      const nlohmann::json& entry = (*list)[i];
      const std::string where = "methodConfig[" + std::to_string(i) + "]";
      if (!entry.is_object())
        return Invalid(where, "must be an object, got " + Shown(entry.dump()));
      MethodSettings settings;
      nlohmann::json grpc_entry = nlohmann::json::object();
      for (const auto& [key, value] : entry.items()) {
        if (key == "name") continue;
        if (key == "timeout") {
          grpc::Status status = ParseDurationField(entry, "timeout", &settings.timeout);
          if (!status.ok()) return Invalid(where, status.error_message());
          // As gRPC: a zero timeout is no timeout.
          settings.has_timeout = settings.timeout.count() > 0;
        } else if (key == "waitForReady") {
          if (value.is_null()) continue;
          if (!value.is_boolean()) {
            return Invalid(where, "waitForReady must be true or false, got " + Shown(value.dump()));
          }
          settings.wait_for_ready = value.get<bool>() ? 1 : 0;
        } else if (key == "maxRequestMessageBytes" || key == "maxResponseMessageBytes") {
          grpc::Status status = ParseMessageLimit(value, where, key, &grpc_entry);
          if (!status.ok()) return status;
        } else if (key == "retryPolicy") {
          nlohmann::json policy;
          grpc::Status status = ParseRetryPolicy(value, where + ".retryPolicy", &policy, warnings);
          if (!status.ok()) return status;
          grpc_entry["retryPolicy"] = std::move(policy);
        } else if (key == "hedgingPolicy") {
          warnings->push_back(where +
                              ": hedgingPolicy is not supported (gRPC C++'s core, which lbkit's "
                              "subchannels use, does not implement hedging); calls are not hedged");
        } else {
          warnings->push_back(where + ": field \"" + Shown(key) +
                              "\" is not supported and is ignored");
        }
      }
      auto names = entry.find("name");
      if (names == entry.end() || names->is_null() || (names->is_array() && names->empty())) {
        // gRPC skips such an entry too (service_config.proto).
        warnings->push_back(where + " has no name and applies to no method");
        continue;
      }
      if (!names->is_array())
        return Invalid(where, "name must be a list, got " + Shown(names->dump()));
      const size_t index = built->settings_.size();
      nlohmann::json grpc_names = nlohmann::json::array();
      for (size_t j = 0; j < names->size(); ++j) {
        const nlohmann::json& name = (*names)[j];
        const std::string name_where = where + ".name[" + std::to_string(j) + "]";
        if (!name.is_object()) {
          return Invalid(name_where, "must be an object, got " + Shown(name.dump()));
        }
        std::string service, method;
        grpc::Status status = NameField(name, "service", name_where, &service);
        if (status.ok()) status = NameField(name, "method", name_where, &method);
        if (!status.ok()) return status;
        for (const auto& [key, value] : name.items()) {
          (void)value;
          if (key != "service" && key != "method") {
            warnings->push_back(name_where + ": field \"" + Shown(key) + "\" is ignored");
          }
        }
        if (service.empty() && !method.empty()) {
          return Invalid(name_where, "method \"" + Shown(method) + "\" is given without a service");
        }
        std::string key = service.empty() ? "" : "/" + service + "/" + method;
        auto [it, fresh] = named_at.emplace(key, name_where);
        if (!fresh) {
          std::string shown = service.empty()
                                  ? "the default name (empty)"
                                  : "service \"" + Shown(service) + "\"" +
                                        (method.empty() ? "" : " method \"" + Shown(method) + "\"");
          return Invalid(name_where,
                         "duplicate name: " + shown + " is also named by " + it->second);
        }
        if (service.empty()) {
          built->default_ = static_cast<long>(index);
        } else {
          built->by_name_.emplace(std::move(key), index);
        }
        nlohmann::json grpc_name = nlohmann::json::object();
        if (!service.empty()) grpc_name["service"] = service;
        if (!method.empty()) grpc_name["method"] = method;
        grpc_names.push_back(std::move(grpc_name));
      }
      built->settings_.push_back(settings);
      if (settings.has_timeout || settings.wait_for_ready >= 0) built->has_call_settings_ = true;
      if (grpc_entry.size() > 0) grpc_side = true;
      // Every named entry goes to gRPC, those with nothing for it too: an
      // exact entry must keep hiding a service-wide retryPolicy there as well.
      grpc_entry["name"] = std::move(grpc_names);
      grpc_entries.push_back(std::move(grpc_entry));
    }
  }
  nlohmann::json grpc_config = nlohmann::json::object();
  if (throttling != root.end() && !throttling->is_null()) {
    nlohmann::json parsed;
    grpc::Status status = ParseThrottling(*throttling, &parsed, warnings);
    if (!status.ok()) return status;
    grpc_config["retryThrottling"] = std::move(parsed);
    grpc_side = true;
  }
  if (grpc_side) {
    grpc_config["methodConfig"] = std::move(grpc_entries);
    built->subchannel_config_ = grpc_config.dump();
  }
  nlohmann::json canonical = nlohmann::json::object();
  if (list != root.end()) canonical["methodConfig"] = *list;
  if (throttling != root.end()) canonical["retryThrottling"] = *throttling;
  built->canonical_ = canonical.dump();
  *table = std::move(built);
  return grpc::Status::OK;
}

void ApplyMethodConfigSlow(MethodConfigSlot& slot, std::string_view method,
                           grpc::ClientContext* context, bool wait_for_ready_explicit) {
  MethodSettings settings;
  {
    MethodConfigSlot::ReadGuard table = slot.Read();
    const MethodSettings* found = table.get() == nullptr ? nullptr : table->Find(method);
    if (found == nullptr) return;
    settings = *found;
  }
  // gRPC's rule: the application's own per-call setting wins over the config.
  if (settings.wait_for_ready >= 0 && !wait_for_ready_explicit) {
    context->set_wait_for_ready(settings.wait_for_ready == 1);
  }
  if (settings.has_timeout) {
    gpr_timespec limit = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                      gpr_time_from_nanos(settings.timeout.count(), GPR_TIMESPAN));
    gpr_timespec current = context->raw_deadline();
    if (gpr_time_cmp(current, gpr_inf_future(current.clock_type)) == 0 ||
        gpr_time_cmp(gpr_convert_clock_type(current, GPR_CLOCK_MONOTONIC), limit) > 0) {
      context->set_deadline(limit);
    }
  }
}

void ChannelMethodConfig::Apply(const ServiceConfig& config, const std::string& target,
                                const std::function<size_t()>& live_subchannels) {
  const MethodConfigTable* table = config.method_config.get();
  const std::string canonical = table == nullptr ? "" : table->canonical();
  if (canonical != canonical_) {
    canonical_ = canonical;
    // Calls read the slot only while some entry has per-call settings.
    slot_.Publish(table != nullptr && table->has_call_settings() ? config.method_config : nullptr);
    std::string grpc_side = table == nullptr ? "" : table->subchannel_service_config();
    changed_live_.clear();
    if (grpc_side != subchannel_config_) {
      subchannel_config_ = std::move(grpc_side);
      const size_t live = live_subchannels();
      if (live > 0) {
        changed_live_ = "the message size limits, retryPolicy or retryThrottling changed: " +
                        std::to_string(live) +
                        " live subchannel(s) keep the previous ones; subchannels created from "
                        "now on use the new ones";
      }
    }
  }
  warnings_ = config.warnings;
  if (!changed_live_.empty()) warnings_.push_back(changed_live_);
  if (warnings_ != logged_) {
    logged_ = warnings_;
    std::string line;
    for (const std::string& warning : warnings_) line += (line.empty() ? "" : "; ") + warning;
    if (!line.empty()) LogLine(target + ": service config: " + line);
  }
}

grpc::ChannelArguments ChannelMethodConfig::SubchannelArgs(
    const grpc::ChannelArguments& base) const {
  grpc::ChannelArguments args = base;
  if (!subchannel_config_.empty()) args.SetServiceConfigJSON(subchannel_config_);
  return args;
}

}  // namespace internal
}  // namespace lbkit
