#include "reward/reward_service.h"

#include <chrono>
#include <utility>
#include <vector>

#include "common/base/status.h"
#include "common/rpc/grpc_status.h"

namespace alignd::reward {

grpc::Status RewardService::Score(grpc::ServerContext* context, const alignd::v1::ScoreRequest* request,
                                  alignd::v1::ScoreResponse* response) {
  return HandleRpc([&]() -> absl::Status {
    absl::Time deadline = absl::Now() + options_.default_deadline;
    if (context->deadline() != std::chrono::system_clock::time_point::max()) {
      deadline = std::min(deadline, absl::FromChrono(context->deadline()));
    }
    std::vector<ScoreInput> items;
    items.reserve(request->items_size());
    for (const alignd::v1::ScoreItem& item : request->items()) {
      ScoreInput in;
      in.prompt = item.prompt();
      in.response = item.response();
      in.fields.insert(item.fields().begin(), item.fields().end());
      items.push_back(std::move(in));
    }
    ASSIGN_OR_RETURN(std::vector<ScoreResult> results, core_->Score(std::move(items), deadline));
    for (const ScoreResult& r : results) {
      alignd::v1::Score* score = response->add_scores();
      score->set_total(r.total);
      score->mutable_parts()->insert(r.parts.begin(), r.parts.end());
    }
    return absl::OkStatus();
  });
}

}  // namespace alignd::reward
