// Batching (padding and packing) and the resumable shuffling cursor.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "common/error.h"
#include "data/batch.h"
#include "data/cursor.h"

namespace {

using namespace scorch::data;

// A sample with ids base, base+1, ... and the last `targets` tokens trained.
SftExample sample(int64_t length, int64_t targets, int64_t base) {
  SftExample ex;
  for (int64_t t = 0; t < length; ++t) {
    ex.input_ids.push_back(base + t);
    ex.loss_mask.push_back(t >= length - targets ? 1 : 0);
  }
  return ex;
}

constexpr int64_t kPad = -7;

TEST(Batch, PaddingShiftsTargetsMasksByTheNextTokenAndPadsToTheLongest) {
  const SftExample a = sample(5, 2, 100), b = sample(3, 1, 200);
  const Batch batch = pad_batch({&a, &b}, kPad);
  ASSERT_EQ(batch.rows, 2);
  ASSERT_EQ(batch.length, 5);
  EXPECT_EQ(batch.num_samples, 2);
  EXPECT_EQ(batch.num_target_tokens, 3);
  // Row 0: ids 100..104; targets 101..104 then pad; trained targets are the last two ids (103, 104).
  EXPECT_EQ(std::vector<int64_t>(batch.input_ids.begin(), batch.input_ids.begin() + 5), (std::vector<int64_t>{100, 101, 102, 103, 104}));
  EXPECT_EQ(std::vector<int64_t>(batch.targets.begin(), batch.targets.begin() + 5), (std::vector<int64_t>{101, 102, 103, 104, kPad}));
  EXPECT_EQ(std::vector<uint8_t>(batch.loss_mask.begin(), batch.loss_mask.begin() + 5), (std::vector<uint8_t>{0, 0, 1, 1, 0}));
  // Row 1: 3 tokens then 2 pads with segment -1, position 0, no loss.
  EXPECT_EQ(std::vector<int64_t>(batch.input_ids.begin() + 5, batch.input_ids.end()), (std::vector<int64_t>{200, 201, 202, kPad, kPad}));
  EXPECT_EQ(std::vector<int64_t>(batch.segment_ids.begin() + 5, batch.segment_ids.end()), (std::vector<int64_t>{0, 0, 0, -1, -1}));
  EXPECT_EQ(std::vector<int64_t>(batch.positions.begin() + 5, batch.positions.end()), (std::vector<int64_t>{0, 1, 2, 0, 0}));
  EXPECT_EQ(std::vector<uint8_t>(batch.loss_mask.begin() + 5, batch.loss_mask.end()), (std::vector<uint8_t>{0, 1, 0, 0, 0}));
}

TEST(Batch, PackingResetsPositionsPerSampleAndNeverTrainsAcrossABoundary) {
  const SftExample a = sample(4, 2, 100), b = sample(3, 3, 200), c = sample(6, 1, 300), d = sample(2, 1, 400);
  const Batch batch = pack_batch({&a, &b, &c, &d}, /*row_length=*/8, kPad);
  // Greedy in order: [a b] (7 tokens), [c d] (8 tokens).
  ASSERT_EQ(batch.rows, 2);
  ASSERT_EQ(batch.length, 8);
  EXPECT_EQ(std::vector<int64_t>(batch.input_ids.begin(), batch.input_ids.begin() + 8),
            (std::vector<int64_t>{100, 101, 102, 103, 200, 201, 202, kPad}));
  EXPECT_EQ(std::vector<int64_t>(batch.positions.begin(), batch.positions.begin() + 8), (std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2, 0}));
  EXPECT_EQ(std::vector<int64_t>(batch.segment_ids.begin(), batch.segment_ids.begin() + 8), (std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, -1}));
  // At a's last token the next id is b's first, but that prediction crosses samples: never trained.
  EXPECT_EQ(batch.targets[3], kPad);
  EXPECT_EQ(batch.loss_mask[3], 0);
  EXPECT_EQ(std::vector<int64_t>(batch.segment_ids.begin() + 8, batch.segment_ids.end()), (std::vector<int64_t>{0, 0, 0, 0, 0, 0, 1, 1}));
}

// (sample base id, position, input, target, mask) for every trained prediction.
std::set<std::tuple<int64_t, int64_t, int64_t, int64_t>> trained(const Batch& b) {
  std::set<std::tuple<int64_t, int64_t, int64_t, int64_t>> out;
  for (int64_t i = 0; i < b.rows * b.length; ++i) {
    if (b.loss_mask[i]) out.insert({b.input_ids[i] - b.positions[i], b.positions[i], b.input_ids[i], b.targets[i]});
  }
  return out;
}

TEST(Batch, PackedAndPaddedBatchesTrainTheSamePredictionsAtTheSamePositions) {
  std::vector<SftExample> samples;
  for (int64_t i = 0; i < 9; ++i) samples.push_back(sample(2 + (i * 5) % 7, 1 + i % 3, 1000 * (i + 1)));
  std::vector<const SftExample*> ptrs;
  for (const auto& s : samples) ptrs.push_back(&s);
  const Batch padded = pad_batch(ptrs, kPad);
  const Batch packed = pack_batch(ptrs, 12, kPad);
  EXPECT_LT(packed.rows, padded.rows);
  EXPECT_EQ(packed.num_target_tokens, padded.num_target_tokens);
  EXPECT_EQ(trained(packed), trained(padded));
  EXPECT_EQ(static_cast<int64_t>(trained(padded).size()), padded.num_target_tokens);
}

TEST(Batch, PackingPlanIsGreedyInOrderAndRejectsOversizedSamples) {
  EXPECT_EQ(plan_packing({3, 3, 3, 5, 1}, 6), (std::vector<std::vector<int64_t>>{{0, 1}, {2}, {3, 4}}));
  EXPECT_THROW(plan_packing({3, 7}, 6), std::invalid_argument);
}

TEST(DataCursor, EachEpochIsAPermutationAndEpochsDiffer) {
  DataCursor c(50, 3);
  const auto e0 = c.next_batch(50), e1 = c.next_batch(50);
  EXPECT_EQ(c.epoch(), 1);
  auto s0 = e0, s1 = e1;
  std::sort(s0.begin(), s0.end());
  std::sort(s1.begin(), s1.end());
  for (int64_t i = 0; i < 50; ++i) {
    EXPECT_EQ(s0[i], i);
    EXPECT_EQ(s1[i], i);
  }
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, s0);  // shuffled
  DataCursor ordered(5, 3, /*shuffle=*/false);
  EXPECT_EQ(ordered.next_batch(7), (std::vector<int64_t>{0, 1, 2, 3, 4, 0, 1}));
}

TEST(DataCursor, RestoredCursorContinuesWithTheSameOrderMidEpochAndAtTheBoundary) {
  for (int64_t taken : {13, 20, 40}) {  // mid-epoch, exactly at the epoch boundary, in epoch 1
    DataCursor a(20, 99);
    a.next_batch(taken);
    const nlohmann::json saved = nlohmann::json::parse(a.to_json().dump());
    const auto expected = a.next_batch(30);
    DataCursor b = DataCursor::from_json(saved);
    EXPECT_EQ(b.next_batch(30), expected) << "after " << taken;
    DataCursor c(20, 99);
    c.restore(saved);
    EXPECT_EQ(c.epoch(), taken / 20 - (taken % 20 == 0 ? 1 : 0));
    EXPECT_EQ(c.next_batch(30), expected) << "after " << taken;
  }
}

TEST(DataCursor, RestoringACursorOfAnotherDatasetOrSeedIsAUserError) {
  DataCursor a(20, 99);
  a.next_batch(5);
  DataCursor other_size(21, 99), other_seed(20, 98);
  EXPECT_THROW(other_size.restore(a.to_json()), scorch::UserError);
  EXPECT_THROW(other_seed.restore(a.to_json()), scorch::UserError);
  EXPECT_THROW(DataCursor::from_json(nlohmann::json{{"epoch", 1}}), scorch::UserError);
}

TEST(DataCursor, RanksTakeDisjointEqualShardsOfTheSameEpochOrder) {
  DataCursor r0(11, 5, true, 0, 2), r1(11, 5, true, 1, 2);
  EXPECT_EQ(r0.samples_per_epoch(), 5);
  const auto a = r0.next_batch(5), b = r1.next_batch(5);
  std::set<int64_t> all(a.begin(), a.end());
  all.insert(b.begin(), b.end());
  EXPECT_EQ(all.size(), 10u);
  const auto order = r0.epoch_order(0);
  for (int64_t k = 0; k < 5; ++k) {
    EXPECT_EQ(a[k], order[2 * k]);
    EXPECT_EQ(b[k], order[2 * k + 1]);
  }
  EXPECT_THROW(DataCursor(1, 5, true, 0, 2), scorch::UserError);
}

}  // namespace
