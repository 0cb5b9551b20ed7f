#include "core/stub_adapter/lame_channel.h"

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <grpc/grpc.h>
#include <grpcpp/support/client_interceptor.h>

#include "core/stub_adapter/hooks.h"

namespace lbkit {
namespace internal {

std::shared_ptr<grpc::Channel> LameChannel(const grpc::Status& status) {
  static std::mutex mu;
  static auto* cache = new std::map<std::pair<int, std::string>, std::shared_ptr<grpc::Channel>>();
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_pair(static_cast<int>(status.error_code()), status.error_message());
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  // A lame channel is never destroyed: a failed call's operations go to its
  // channel (stub_adapter.h, item 9), and an async call may start them any
  // time later. So the cache never evicts; past kMaxLame distinct messages
  // (failure texts that name changing addresses, say) a failure gets one
  // channel per status code, whose message says where the reason is.
  constexpr size_t kMaxLame = 1024;
  if (cache->size() >= kMaxLame) {
    key.second = "lbkit: the call failed (the channel has failed calls for more than " +
                 std::to_string(kMaxLame) +
                 " distinct reasons; lbkit::Channel::Snapshot() shows the current one)";
    it = cache->find(key);
    if (it != cache->end()) return it->second;
  }
  grpc_channel* lame = grpc_lame_client_channel_create(
      nullptr, static_cast<grpc_status_code>(status.error_code()), key.second.c_str());
  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannelInternal(
      "", lame,
      std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>());
  cache->emplace(std::move(key), channel);
  return channel;
}

grpc::CompletionQueue* SharedCallbackCQ() {
  // Deliberately never destroyed: callback calls of any lbkit channel may
  // still be completing on this queue when their channel is gone.
  static auto* anchor = new std::shared_ptr<grpc::Channel>(
      LameChannel(grpc::Status(grpc::StatusCode::INTERNAL, "lbkit callback queue anchor")));
  static grpc::CompletionQueue* cq = Hooks::CallbackCQ(anchor->get());
  return cq;
}

}  // namespace internal
}  // namespace lbkit
