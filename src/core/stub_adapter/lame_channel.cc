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
  if (cache->size() >= 64) cache->clear();  // distinct failures are few; keep it bounded
  grpc_channel* lame = grpc_lame_client_channel_create(
      nullptr, static_cast<grpc_status_code>(status.error_code()), status.error_message().c_str());
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
