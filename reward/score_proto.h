// ScoreInputs as alignd.v1.ScoreItems: what a call to any alignd.v1.Reward server carries (the job's reward servers,
// learner/remote.h, and an outside server part, reward/server_scorer.cc).
#ifndef ALIGND_REWARD_SCORE_PROTO_H_
#define ALIGND_REWARD_SCORE_PROTO_H_

#include <cstddef>
#include <vector>

#include "proto/alignd.pb.h"
#include "reward/scorer.h"

namespace alignd::reward {

// A request with inputs[begin, end): each item's prompt, response and fields.
v1::ScoreRequest ScoreRequestFor(const std::vector<ScoreInput>& inputs, size_t begin, size_t end);

}  // namespace alignd::reward

#endif  // ALIGND_REWARD_SCORE_PROTO_H_
