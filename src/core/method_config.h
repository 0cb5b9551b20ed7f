// methodConfig and retryThrottling of gRPC's service config (gRFC A2, A6), as
// lbkit honours them (docs/service-config.md):
//   - timeout and waitForReady are lbkit's: applied to the call's
//     ClientContext when lbkit's channel creates the call, before the pick,
//     so that lbkit's own queueing, the relayed leg of a queued call and the
//     real call on the subchannel all see them;
//   - maxRequestMessageBytes, maxResponseMessageBytes, retryPolicy and
//     retryThrottling are gRPC's: handed to every subchannel's grpc::Channel
//     as its service config (GRPC_ARG_SERVICE_CONFIG), whose channel enforces
//     them for the calls placed on it;
//   - hedgingPolicy and unknown fields are accepted with a warning
//     (ChannelSnapshot::config_warnings and one log line).
#ifndef LBKIT_SRC_CORE_METHOD_CONFIG_H_
#define LBKIT_SRC_CORE_METHOD_CONFIG_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/status.h>
#include <nlohmann/json.hpp>

#include "core/picker_slot.h"
#include "lbkit/service_config.h"

namespace lbkit {
namespace internal {

// What lbkit applies to a call of a method when it creates the call.
struct MethodSettings {
  bool has_timeout = false;
  std::chrono::nanoseconds timeout{0};
  int wait_for_ready = -1;  // -1: not configured; else 0 or 1
};

// A parsed methodConfig list (and retryThrottling). Immutable once built;
// shared by every call that reads it.
class MethodConfigTable {
 public:
  // The entry for a call's method path "/<service>/<method>", by gRPC's
  // matching: the entry naming the service and method, else the one naming
  // the service alone, else the default entry (empty name); null when none
  // matches.
  const MethodSettings* Find(std::string_view path) const;
  // Whether any entry has a timeout or waitForReady (something lbkit applies
  // per call).
  bool has_call_settings() const { return has_call_settings_; }
  // The part gRPC's own channel enforces, as a service config JSON for each
  // subchannel's grpc::Channel; empty when there is none.
  const std::string& subchannel_service_config() const { return subchannel_config_; }
  // The input as parsed, for telling a changed config from a repeated one.
  const std::string& canonical() const { return canonical_; }

 private:
  friend grpc::Status ParseMethodConfig(const nlohmann::json& root,
                                        std::shared_ptr<const MethodConfigTable>* table,
                                        std::vector<std::string>* warnings);
  std::map<std::string, size_t, std::less<>> by_name_;  // "/svc/method" and "/svc/"
  std::vector<MethodSettings> settings_;
  long default_ = -1;  // index of the default entry, -1 for none
  bool has_call_settings_ = false;
  std::string subchannel_config_;
  std::string canonical_;
};

// Parses "methodConfig" and "retryThrottling" of the service config object
// `root`. On success *table is the parsed table, or null when `root` has
// neither, and `warnings` gets one sentence per accepted but unhonoured field
// (hedgingPolicy, unknown fields). Returns INVALID_ARGUMENT naming the entry
// and the problem otherwise (gRPC's own checks: names, durations, types,
// retryPolicy per gRFC A6).
grpc::Status ParseMethodConfig(const nlohmann::json& root,
                               std::shared_ptr<const MethodConfigTable>* table,
                               std::vector<std::string>* warnings);

// Where a channel publishes the table its calls read: lock-free for readers,
// as the picker is. Holds null while no entry has call settings.
using MethodConfigSlot = RcuSlot<const MethodConfigTable>;

void ApplyMethodConfigSlow(MethodConfigSlot& slot, std::string_view method,
                           grpc::ClientContext* context, bool wait_for_ready_explicit);

// Applies the slot's entry for `method` ("/<service>/<method>") to `context`
// before the call is created: a timeout shortens the deadline to now+timeout
// when the call has none or a later one; waitForReady sets the call's
// wait-for-ready unless the application set it explicitly (gRPC's rule;
// `wait_for_ready_explicit`, which only the stub adapter can read).
// Costs one relaxed load when the channel has no per-call settings.
inline void ApplyMethodConfig(MethodConfigSlot& slot, std::string_view method,
                              grpc::ClientContext* context, bool wait_for_ready_explicit) {
  if (slot.HasValue()) ApplyMethodConfigSlow(slot, method, context, wait_for_ready_explicit);
}

// A channel's side of it: what ClientConn holds. Apply and the accessors on
// the channel's serializer only (or before the channel has started); OnCall
// on any thread.
class ChannelMethodConfig {
 public:
  // Takes the methodConfig of `config`, the config now in force. A changed
  // gRPC-side part applies to subchannels created from now on: when
  // `live_subchannels()` (asked only then) is above 0, that is said in
  // warnings() and logged. Warnings are logged once per config, prefixed
  // with `target`.
  void Apply(const ServiceConfig& config, const std::string& target,
             const std::function<size_t()>& live_subchannels);
  // Before a call of `method` is created (ApplyMethodConfig).
  void OnCall(std::string_view method, grpc::ClientContext* context, bool wait_for_ready_explicit) {
    ApplyMethodConfig(slot_, method, context, wait_for_ready_explicit);
  }
  // `base` plus the gRPC-side service config, for a new subchannel.
  grpc::ChannelArguments SubchannelArgs(const grpc::ChannelArguments& base) const;
  // ChannelSnapshot::config_warnings.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  MethodConfigSlot slot_{nullptr};
  std::string canonical_;
  std::string subchannel_config_;
  std::string changed_live_;  // the warning about live subchannels, while it holds
  std::vector<std::string> warnings_;
  std::vector<std::string> logged_;
};

}  // namespace internal
}  // namespace lbkit

#endif  // LBKIT_SRC_CORE_METHOD_CONFIG_H_
