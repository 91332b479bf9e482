#include "reward/model_scorer.h"

#include <cmath>
#include <string>
#include <vector>

#include "common/model/hf_model.h"
#include "common/model/model_config.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"
#include "gtest/gtest.h"

namespace alignd::reward {
namespace {

// Writes a tiny Llama-family model (score head when `score`) with the byte tokenizer to a fresh folder.
std::string SaveTinyModel(const std::string& name, bool score) {
  ModelConfig c = TinyLlamaConfig(261, 32, 2, 4, 2, 256);
  if (score) {
    c.head = HeadKind::kScore;
    c.architecture = "LlamaForSequenceClassification";
  }
  CausalLM model(c);
  model->InitWeights(5);
  std::string dir = ::testing::TempDir() + "/" + name;
  auto tokenizer = MakeByteTokenizer();
  EXPECT_TRUE(SaveModelDir(dir, *model, tokenizer.get()).ok());
  return dir;
}

TEST(RewardModelScorerTest, ScoreOfAnItemDoesNotDependOnItsBatch) {
  auto scorer = MakeRewardModelScorer(SaveTinyModel("rm", true));
  ASSERT_TRUE(scorer.ok()) << scorer.status();
  ScoreInput short_item{"What is 2 + 2?", "4", {}};
  ScoreInput long_item{"Write a long story.", std::string(120, 'x') + " and then some more words", {}};
  auto alone = (*scorer)->ScoreBatch({short_item});
  auto batch = (*scorer)->ScoreBatch({long_item, short_item});
  ASSERT_TRUE(alone.ok() && batch.ok());
  ASSERT_EQ(batch->size(), 2u);
  // Padding the short item to the long one's length must not move its score (the head is read at its last token).
  EXPECT_NEAR(*(*batch)[1], *(*alone)[0], 1e-5);
  EXPECT_TRUE(std::isfinite(*(*batch)[0]));
  EXPECT_NE((*batch)[0], (*batch)[1]);
}

TEST(RewardModelScorerTest, ModelWithoutScoreHeadIsInvalidArgument) {
  EXPECT_EQ(MakeRewardModelScorer(SaveTinyModel("lm", false)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RewardModelScorerTest, MissingFolderIsNotFound) {
  EXPECT_EQ(MakeRewardModelScorer(::testing::TempDir() + "/no-such-model").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace alignd::reward
