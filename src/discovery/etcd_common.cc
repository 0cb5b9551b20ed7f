#include "discovery/etcd_common.h"

#include <algorithm>
#include <limits>
#include <utility>

#include <absl/strings/str_split.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <nlohmann/json.hpp>

#include "core/address.h"
#include "core/json_depth.h"
#include "core/shown_text.h"

namespace lbkit {
namespace internal {
namespace {

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// Compact JSON text; bytes that are not UTF-8 become U+FFFD instead of an
// exception.
std::string JsonText(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool HasControlByte(const std::string& text) {
  return std::any_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// A weight as the metadata gives it: a JSON whole number, or one as a string.
bool ParseWeight(const nlohmann::json& value, uint32_t* weight) {
  uint64_t number = 0;
  if (value.is_number_unsigned()) {
    number = value.get<uint64_t>();
  } else if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (text.empty() || text.size() > 10 || text[0] == '0') return false;
    for (char c : text) {
      if (c < '0' || c > '9') return false;
      number = number * 10 + static_cast<uint64_t>(c - '0');
    }
  } else {
    return false;
  }
  if (number < 1 || number > std::numeric_limits<uint32_t>::max()) return false;
  *weight = static_cast<uint32_t>(number);
  return true;
}

}  // namespace

grpc::Status ParseEtcdTarget(const Target& target, EtcdTarget* out) {
  auto invalid = [&target](const std::string& why) {
    return Invalid("target \"" + Shown(target.uri) + "\": " + why);
  };
  EtcdTarget result;
  if (target.authority.empty()) {
    return invalid("no etcd member (expected etcd://HOST:PORT[,HOST:PORT...]/SERVICE)");
  }
  for (absl::string_view member : absl::StrSplit(target.authority, ',')) {
    if (member.empty()) return invalid("an empty etcd member in the list");
    // CheckAddress also requires the port an etcd member needs.
    grpc::Status status = CheckAddress(std::string(member));
    if (!status.ok()) return invalid("etcd member: " + status.error_message());
    result.members.emplace_back(member);
  }
  result.service = target.endpoint;
  if (result.service.empty()) {
    return invalid("no service name (expected etcd://HOST:PORT/SERVICE)");
  }
  if (HasControlByte(result.service)) return invalid("the service name has a control byte");
  *out = std::move(result);
  return grpc::Status::OK;
}

grpc::Status ParseEtcdTarget(const std::string& uri, EtcdTarget* out) {
  Target target;
  grpc::Status status = ParseTarget(uri, &target);
  if (!status.ok()) return status;
  if (target.scheme != "etcd") {
    return Invalid("target \"" + Shown(uri) + "\": expected the scheme etcd://");
  }
  return ParseEtcdTarget(target, out);
}

std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::string EtcdEndpointKey(const std::string& service, const std::string& address) {
  return service + "/" + address;
}

std::string EncodeEtcdEndpoint(const std::string& address, const EndpointAttributes& attributes) {
  nlohmann::json value = {{"Op", 0}, {"Addr", address}};
  nlohmann::json metadata = nlohmann::json::object();
  if (attributes.weight != 1) metadata["weight"] = attributes.weight;
  if (!attributes.hash_key.empty()) metadata["hash_key"] = attributes.hash_key;
  for (const auto& [key, text] : attributes.values) metadata[key] = text;
  if (!metadata.empty()) value["Metadata"] = std::move(metadata);
  return JsonText(value);
}

grpc::Status DecodeEtcdEndpoint(const std::string& text, EtcdEndpointValue* out) {
  // Anyone who can write under the prefix controls these bytes. A value is
  // a small object; nlohmann's dump(), used below for error text and free-
  // form metadata, recurses once per level, so a value nested a million
  // deep would overflow the stack of the thread it runs on (lbkit's IoLoop).
  constexpr size_t kMaxValueBytes = 64 * 1024;
  constexpr int kMaxDepth = 32;
  if (text.size() > kMaxValueBytes) {
    return Invalid("the value has " + std::to_string(text.size()) + " bytes, more than " +
                   std::to_string(kMaxValueBytes));
  }
  if (JsonNestingDepth(text, kMaxDepth) > kMaxDepth) {
    return Invalid("the value nests deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return Invalid("not JSON: \"" + Shown(text) + "\"");
  if (!value.is_object()) return Invalid("not a JSON object: \"" + Shown(text) + "\"");
  EtcdEndpointValue result;
  auto op = value.find("Op");
  if (op != value.end()) {
    if (!op->is_number_integer() || (op->get<int64_t>() != 0 && op->get<int64_t>() != 1)) {
      return Invalid("\"Op\" is " + Shown(JsonText(*op)) + ", expected 0 (add) or 1 (delete)");
    }
    result.remove = op->get<int64_t>() == 1;
  }
  auto addr = value.find("Addr");
  if (addr == value.end() || !addr->is_string() || addr->get_ref<const std::string&>().empty()) {
    return Invalid("no \"Addr\" string: \"" + Shown(text) + "\"");
  }
  const std::string& address = addr->get_ref<const std::string&>();
  grpc::Status status = CheckAddress(address);
  if (!status.ok()) return status;
  result.endpoint.addresses.push_back(address);
  auto metadata = value.find("Metadata");
  if (metadata != value.end() && !metadata->is_null()) {
    EndpointAttributes& attributes = result.endpoint.attributes;
    if (!metadata->is_object()) {
      attributes.values["metadata"] = JsonText(*metadata);
    } else {
      for (const auto& [key, item] : metadata->items()) {
        if (key == "weight") {
          if (!ParseWeight(item, &attributes.weight)) {
            return Invalid("\"Metadata\".weight is " + Shown(JsonText(item)) +
                           ", expected a whole number from 1 to 4294967295");
          }
        } else if (key == "hash_key" && item.is_string()) {
          attributes.hash_key = item.get<std::string>();
        } else {
          attributes.values[key] = item.is_string() ? item.get<std::string>() : JsonText(item);
        }
      }
    }
  }
  *out = std::move(result);
  return grpc::Status::OK;
}

EtcdBackoff::EtcdBackoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
    : initial_(initial),
      max_(std::max(initial, max)),
      current_ms_(static_cast<double>(initial.count())),
      random_(std::random_device{}()) {}

std::chrono::milliseconds EtcdBackoff::Next() {
  double base = current_ms_;
  current_ms_ = std::min(current_ms_ * 1.6, static_cast<double>(max_.count()));
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  return std::chrono::milliseconds(static_cast<int64_t>(base * jitter(random_)));
}

void EtcdBackoff::Reset() { current_ms_ = static_cast<double>(initial_.count()); }

EtcdMembers::EtcdMembers(std::vector<std::string> members, std::chrono::milliseconds max_backoff)
    : members_(std::move(members)), max_backoff_(max_backoff), channels_(members_.size()) {}

std::shared_ptr<grpc::Channel> EtcdMembers::Current(std::string* address) {
  std::lock_guard<std::mutex> lock(mu_);
  if (address != nullptr) *address = members_[current_];
  std::shared_ptr<grpc::Channel>& channel = channels_[current_];
  if (channel == nullptr) {
    grpc::ChannelArguments args;
    int max_backoff_ms = static_cast<int>(std::min<int64_t>(max_backoff_.count(), 1 << 30));
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(100, max_backoff_ms));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::min(100, max_backoff_ms));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_backoff_ms);
    // etcd refuses pings more often than every 5 s (its default
    // --grpc-keepalive-min-time); 10 s keeps it happy and still notices a
    // member that went silent.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    // gRPC stops pinging after 2 pings with no data frame between them by
    // default; a quiet watch sends none, and a member that froze would then
    // never be noticed. etcd allows a ping every 5 s on an open stream.
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    // Without calls no pings: etcd would answer them with GOAWAY.
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    // A service with many endpoints lists them in one Range response, which
    // may exceed gRPC's default 4 MB receive limit.
    args.SetMaxReceiveMessageSize(-1);
    channel =
        grpc::CreateCustomChannel(members_[current_], grpc::InsecureChannelCredentials(), args);
  }
  return channel;
}

void EtcdMembers::Advance() {
  std::lock_guard<std::mutex> lock(mu_);
  // The member that failed gets a new channel when next used (calls in
  // flight keep the old one alive): a gRPC channel whose connection attempts
  // timed out while the member was restarting was seen to keep failing
  // after the member served again.
  channels_[current_].reset();
  current_ = (current_ + 1) % members_.size();
}

}  // namespace internal
}  // namespace lbkit
