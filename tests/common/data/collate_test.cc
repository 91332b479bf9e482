#include "common/data/collate.h"

#include <ATen/ATen.h>

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

using Rows = std::vector<std::vector<int64_t>>;
constexpr int64_t X = kIgnoreIndex;

Rows ToRows(const at::Tensor& t) {
  EXPECT_EQ(t.scalar_type(), at::kLong);
  EXPECT_EQ(t.dim(), 2);
  at::Tensor c = t.contiguous();
  Rows rows(c.size(0));
  const int64_t* data = c.data_ptr<int64_t>();
  for (int64_t b = 0; b < c.size(0); ++b) rows[b].assign(data + b * c.size(1), data + (b + 1) * c.size(1));
  return rows;
}

TokenizedExample Ex(std::vector<int32_t> ids, std::vector<uint8_t> mask) { return {std::move(ids), std::move(mask)}; }

// Prompt 5 6 with target 7 8, and prompt 5 with target 9.
const std::vector<TokenizedExample> kExamples = {Ex({5, 6, 7, 8}, {0, 0, 1, 1}), Ex({5, 9}, {0, 1})};

TEST(Collate, RightPadding) {
  CollateOptions options;
  options.pad_id = 0;
  absl::StatusOr<Batch> b = Collate(kExamples, options);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(ToRows(b->input_ids), (Rows{{5, 6, 7, 8}, {5, 9, 0, 0}}));
  EXPECT_EQ(ToRows(b->attention_mask), (Rows{{1, 1, 1, 1}, {1, 1, 0, 0}}));
  EXPECT_EQ(ToRows(b->labels), (Rows{{X, X, 7, 8}, {X, 9, X, X}}));
  EXPECT_EQ(ToRows(b->position_ids), (Rows{{0, 1, 2, 3}, {0, 1, 1, 1}}));
}

TEST(Collate, LeftPaddingStartsPositionsAtTheFirstRealToken) {
  CollateOptions options;
  options.pad_id = 3;
  options.padding_side = PaddingSide::kLeft;
  absl::StatusOr<Batch> b = Collate(kExamples, options);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(ToRows(b->input_ids), (Rows{{5, 6, 7, 8}, {3, 3, 5, 9}}));
  EXPECT_EQ(ToRows(b->attention_mask), (Rows{{1, 1, 1, 1}, {0, 0, 1, 1}}));
  EXPECT_EQ(ToRows(b->labels), (Rows{{X, X, 7, 8}, {X, X, X, 9}}));
  EXPECT_EQ(ToRows(b->position_ids), (Rows{{0, 1, 2, 3}, {0, 0, 0, 1}}));
}

TEST(Collate, PositionsAreClampedCumsumOfTheMask) {
  for (PaddingSide side : {PaddingSide::kRight, PaddingSide::kLeft}) {
    CollateOptions options;
    options.padding_side = side;
    options.pad_to_multiple_of = 3;
    absl::StatusOr<Batch> b = Collate(kExamples, options);
    ASSERT_TRUE(b.ok());
    at::Tensor expected = (b->attention_mask.cumsum(1) - 1).clamp_min(0);
    EXPECT_TRUE(at::equal(b->position_ids, expected));
  }
}

TEST(Collate, PadToMultiple) {
  CollateOptions options;
  options.pad_id = 1;
  options.pad_to_multiple_of = 3;
  absl::StatusOr<Batch> b = Collate(kExamples, options);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(ToRows(b->input_ids), (Rows{{5, 6, 7, 8, 1, 1}, {5, 9, 1, 1, 1, 1}}));
  EXPECT_EQ(ToRows(b->labels), (Rows{{X, X, 7, 8, X, X}, {X, 9, X, X, X, X}}));
}

TEST(Collate, PackedPutsSequencesEndToEndWithPositionsAndLabelsOfTheirOwn) {
  // A sequence whose first token is marked trained (a text record) gets no label there: in a packed row the
  // position before it belongs to another sequence.
  std::vector<TokenizedExample> examples = kExamples;
  examples.push_back(Ex({4, 3, 2}, {1, 1, 1}));
  auto batch = CollatePacked(examples, {});
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_TRUE(batch->packed());
  EXPECT_EQ(batch->num_sequences(), 3);
  EXPECT_THAT(batch->offsets, ::testing::ElementsAre(0, 4, 6, 9));
  EXPECT_EQ(ToRows(batch->input_ids), (Rows{{5, 6, 7, 8, 5, 9, 4, 3, 2}}));
  EXPECT_EQ(ToRows(batch->labels), (Rows{{X, X, 7, 8, X, 9, X, 3, 2}}));
  EXPECT_EQ(ToRows(batch->position_ids), (Rows{{0, 1, 2, 3, 0, 1, 0, 1, 2}}));
  EXPECT_EQ(ToRows(batch->attention_mask), (Rows{{1, 1, 1, 1, 1, 1, 1, 1, 1}}));
  at::Tensor x = at::arange(9, at::kFloat).view({1, 9});
  EXPECT_TRUE(at::equal(batch->SumPerSequence(x), at::tensor({0.f + 1 + 2 + 3, 4.f + 5, 6.f + 7 + 8})));
  EXPECT_TRUE(at::equal(batch->LastTokenIndex(), at::tensor({3, 5, 8}, at::kLong)));
  EXPECT_FALSE(CollatePacked({}, {}).ok());
  EXPECT_FALSE(CollatePacked({Ex({1, 2}, {1})}, {}).ok());
}

TEST(Collate, PaddedBatchSumsRowsAndFindsTheLastRealToken) {
  auto batch = Collate(kExamples, {});
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_FALSE(batch->packed());
  EXPECT_EQ(batch->num_sequences(), 2);
  at::Tensor x = at::arange(8, at::kFloat).view({2, 4});
  EXPECT_TRUE(at::equal(batch->SumPerSequence(x), at::tensor({6.f, 22.f})));
  EXPECT_TRUE(at::equal(batch->LastTokenIndex(), at::tensor({3, 5}, at::kLong)));  // row 1 is [5, 9, pad, pad]
}

TEST(Collate, PackedPairsPutChosenSequencesFirst) {
  TokenizedPair pair{Ex({5, 6}, {0, 1}), Ex({5, 7, 8}, {0, 1, 1})};
  auto batch = CollatePairsPacked({pair, pair}, {});
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_THAT(batch->offsets, ::testing::ElementsAre(0, 2, 4, 7, 10));
  EXPECT_EQ(ToRows(batch->input_ids), (Rows{{5, 6, 5, 6, 5, 7, 8, 5, 7, 8}}));
}

TEST(Collate, PairsPutChosenRowsFirst) {
  TokenizedPair p1{Ex({5, 7}, {0, 1}), Ex({5, 8, 8}, {0, 1, 1}), 1};
  TokenizedPair p2{Ex({6, 9}, {0, 1}), Ex({6, 4}, {0, 1}), 1};
  absl::StatusOr<Batch> b = CollatePairs({p1, p2}, CollateOptions());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(ToRows(b->input_ids), (Rows{{5, 7, 0}, {6, 9, 0}, {5, 8, 8}, {6, 4, 0}}));
  EXPECT_EQ(ToRows(b->labels), (Rows{{X, 7, X}, {X, 9, X}, {X, 8, 8}, {X, 4, X}}));
}

TEST(Collate, PromptsAreLeftPaddedWithoutLabels) {
  CollateOptions options;
  options.pad_id = 2;  // padding_side is ignored
  absl::StatusOr<Batch> b = CollatePrompts({{5, 6, 7}, {8}}, options);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(ToRows(b->input_ids), (Rows{{5, 6, 7}, {2, 2, 8}}));
  EXPECT_EQ(ToRows(b->labels), (Rows{{X, X, X}, {X, X, X}}));
  EXPECT_EQ(ToRows(b->position_ids), (Rows{{0, 1, 2}, {0, 0, 0}}));
}

TEST(Collate, Errors) {
  absl::StatusOr<Batch> none = Collate({}, CollateOptions());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.status().message(), "no examples to collate");
  absl::StatusOr<Batch> empty = Collate({Ex({1}, {1}), Ex({}, {})}, CollateOptions());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(empty.status().message(), "example 1 is empty");
  absl::StatusOr<Batch> mismatch = Collate({Ex({1, 2}, {1})}, CollateOptions());
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mismatch.status().message(), "example 0 has 2 input_ids but 1 loss_mask entries");
  CollateOptions bad;
  bad.pad_to_multiple_of = 0;
  EXPECT_EQ(Collate(kExamples, bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Pack, RowsOfSeqLenWithDocumentStartsMasked) {
  // Three documents: BOS-less text is all trained, so only the packing masks the starts.
  std::vector<TokenizedExample> docs = {Ex({1, 2, 3}, {1, 1, 1}), Ex({4, 5}, {1, 1}), Ex({6, 7, 8, 9}, {1, 1, 1, 1})};
  absl::StatusOr<std::vector<TokenizedExample>> rows = PackExamples(docs, 4);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);  // 9 tokens: two full rows, the last token dropped
  EXPECT_THAT((*rows)[0].input_ids, ::testing::ElementsAre(1, 2, 3, 4));
  EXPECT_THAT((*rows)[0].loss_mask, ::testing::ElementsAre(0, 1, 1, 0));
  EXPECT_THAT((*rows)[1].input_ids, ::testing::ElementsAre(5, 6, 7, 8));
  EXPECT_THAT((*rows)[1].loss_mask, ::testing::ElementsAre(1, 0, 1, 1));

  absl::StatusOr<Batch> b = Collate(*rows, CollateOptions());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(ToRows(b->labels), (Rows{{X, 2, 3, X}, {5, X, 7, 8}}));
  EXPECT_EQ(ToRows(b->position_ids), (Rows{{0, 1, 2, 3}, {0, 1, 2, 3}}));
}

TEST(Pack, KeepsRemainderWhenAsked) {
  absl::StatusOr<std::vector<TokenizedExample>> rows = PackExamples({Ex({1, 2, 3}, {0, 1, 1})}, 2, false);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_THAT((*rows)[1].input_ids, ::testing::ElementsAre(3));
  absl::StatusOr<Batch> b = Collate(*rows, CollateOptions());
  EXPECT_EQ(ToRows(b->labels), (Rows{{X, 2}, {3, X}}));
  EXPECT_EQ(PackExamples({}, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd
