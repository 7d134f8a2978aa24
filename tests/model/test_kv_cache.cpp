// Incremental decoding with KvCache gives the logits of a full forward over the same tokens: for
// equal-length rows, left-padded rows of different lengths, rows repeated after prefill and rows
// dropped mid-decode, and a new turn appended while another row sits the step out.
#include <gtest/gtest.h>

#include "common/error.h"
#include "model/kv_cache.h"
#include "model_test_util.h"

using scorch::KvCache;
using scorch::Transformer;
using scorch::test::arange_positions;
using scorch::test::max_abs_diff;
using scorch::test::random_model;
using scorch::test::tiny_config;

namespace {

constexpr double kTol = 2e-5;

// Logits [T, V] of the full forward of one unpadded sequence.
at::Tensor full_logits(const Transformer& m, const std::vector<int64_t>& seq) {
  const at::Tensor ids = at::tensor(seq).view({1, -1});
  return m.logits(m.forward(ids, arange_positions(1, ids.size(1))))[0];
}

// One cached step: tokens [B, T], mask [B, T]; returns logits [B, T, V].
at::Tensor step(const Transformer& m, KvCache& cache, const at::Tensor& tokens, const at::Tensor& mask) {
  const at::Tensor pos = cache.next_positions(tokens.size(1), mask);
  return m.logits(m.forward(tokens, pos, mask, &cache));
}

at::Tensor all_real(int64_t b, int64_t t) { return at::ones({b, t}, at::kBool); }

// Prompts left-padded to P tokens: ids [B, P] and the real-token mask [B, P].
std::pair<at::Tensor, at::Tensor> left_padded(const std::vector<std::vector<int64_t>>& prompts, int64_t P) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  at::Tensor ids = at::zeros({B, P}, at::kLong), mask = at::zeros({B, P}, at::kBool);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = prompts[b].size();
    ids[b].narrow(0, P - n, n).copy_(at::tensor(prompts[b]));
    mask[b].narrow(0, P - n, n).fill_(true);
  }
  return {ids, mask};
}

}  // namespace

TEST(KvCache, TokenByTokenDecodeMatchesFullForward) {
  const Transformer m = random_model(tiny_config("llama"), 11);
  const at::Tensor ids = at::randint(53, {3, 8}, at::kLong);
  const at::Tensor full = m.logits(m.forward(ids, arange_positions(3, 8)));
  KvCache cache = KvCache::for_model(m.config(), 3, 16, at::kFloat, at::kCPU);
  std::vector<at::Tensor> parts{step(m, cache, ids.narrow(1, 0, 3), all_real(3, 3))};  // prefill
  for (int64_t t = 3; t < 8; ++t) parts.push_back(step(m, cache, ids.narrow(1, t, 1), all_real(3, 1)));
  EXPECT_LT(max_abs_diff(at::cat(parts, 1), full), kTol);
  EXPECT_EQ(cache.used(), 8);
  EXPECT_TRUE(at::equal(cache.lengths(), at::full({3}, 8, at::kLong)));
}

TEST(KvCache, LeftPaddedRowsOfDifferentLengthsDecodeTogether) {
  const Transformer m = random_model(tiny_config("qwen2"), 12);
  const std::vector<std::vector<int64_t>> prompts = {{4, 9}, {7, 3, 3, 50, 12}, {33, 21, 8}};
  const int64_t P = 5;
  const auto [ids, mask] = left_padded(prompts, P);
  KvCache cache = KvCache::for_model(m.config(), 3, 12, at::kFloat, at::kCPU);
  const at::Tensor positions = cache.next_positions(P, mask);
  EXPECT_EQ(positions[0][3].item<int64_t>(), 0);  // first real token of a left-padded row is position 0
  EXPECT_EQ(positions[0][4].item<int64_t>(), 1);
  const at::Tensor prefill = step(m, cache, ids, mask);
  const std::vector<int64_t> next = {5, 6, 7};
  const at::Tensor decode = step(m, cache, at::tensor(next).view({3, 1}), all_real(3, 1));
  for (int64_t b = 0; b < 3; ++b) {
    std::vector<int64_t> seq = prompts[b];
    seq.push_back(next[b]);
    const at::Tensor full = full_logits(m, seq);
    const int64_t n = prompts[b].size();
    EXPECT_LT(max_abs_diff(prefill[b].narrow(0, P - n, n), full.narrow(0, 0, n)), kTol) << "row " << b;
    EXPECT_LT(max_abs_diff(decode[b][0], full[n]), kTol) << "row " << b;
    EXPECT_TRUE(at::isfinite(prefill[b]).all().item<bool>()) << "pad queries stay finite";
  }
  EXPECT_TRUE(at::equal(cache.lengths(), at::tensor(std::vector<int64_t>{3, 6, 4})));
}

TEST(KvCache, RepeatRowsSharesPrefillAndKeepRowsDropsFinishedRows) {
  const Transformer m = random_model(tiny_config("llama", true), 13);
  const std::vector<std::vector<int64_t>> prompts = {{10, 11, 12}, {20, 21, 22, 23}};
  at::Tensor ids = at::zeros({2, 4}, at::kLong), mask = at::ones({2, 4}, at::kBool);
  ids[0].narrow(0, 1, 3).copy_(at::tensor(prompts[0]));
  mask[0][0] = false;
  ids[1].copy_(at::tensor(prompts[1]));
  KvCache cache = KvCache::for_model(m.config(), 2, 10, at::kFloat, at::kCPU);
  step(m, cache, ids, mask);
  cache.repeat_rows(3);  // rows 0-2 sample prompt 0, rows 3-5 prompt 1
  ASSERT_EQ(cache.batch(), 6);
  std::vector<std::vector<int64_t>> seqs;
  for (int64_t r = 0; r < 6; ++r) seqs.push_back(prompts[r / 3]);
  at::Tensor last;
  for (int s = 0; s < 2; ++s) {
    at::Tensor tok = at::randint(53, {6, 1}, at::kLong);
    for (int64_t r = 0; r < 6; ++r) seqs[r].push_back(tok[r][0].item<int64_t>());
    last = step(m, cache, tok, all_real(6, 1));
  }
  const std::vector<int64_t> keep = {5, 0, 2};
  cache.keep_rows(at::tensor(keep));
  ASSERT_EQ(cache.batch(), 3);
  for (int s = 0; s < 2; ++s) {
    at::Tensor tok = at::randint(53, {3, 1}, at::kLong);
    for (int64_t i = 0; i < 3; ++i) seqs[keep[i]].push_back(tok[i][0].item<int64_t>());
    last = step(m, cache, tok, all_real(3, 1));
  }
  for (int64_t i = 0; i < 3; ++i) {
    const at::Tensor full = full_logits(m, seqs[keep[i]]);
    EXPECT_LT(max_abs_diff(last[i][0], full[full.size(0) - 1]), kTol) << "kept row " << keep[i];
  }
}

TEST(KvCache, NewTurnAppendsWhileOtherRowsSitOut) {
  const Transformer m = random_model(tiny_config("mistral"), 14);
  std::vector<std::vector<int64_t>> seqs = {{1, 2, 3}, {4, 5, 6}};
  KvCache cache = KvCache::for_model(m.config(), 2, 16, at::kFloat, at::kCPU);
  step(m, cache, at::tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 6}).view({2, 3}), all_real(2, 3));
  // Row 0 receives a 3-token turn; row 1 sits this step out (its slots stay invalid).
  const at::Tensor turn = at::tensor(std::vector<int64_t>{40, 41, 42, 0, 0, 0}).view({2, 3});
  const at::Tensor turn_mask = at::tensor(std::vector<uint8_t>{1, 1, 1, 0, 0, 0}).to(at::kBool).view({2, 3});
  const at::Tensor out = step(m, cache, turn, turn_mask);
  seqs[0].insert(seqs[0].end(), {40, 41, 42});
  EXPECT_LT(max_abs_diff(out[0], full_logits(m, seqs[0]).narrow(0, 3, 3)), kTol);
  // Both rows continue: row 1 must not see row 0's turn or its own skipped slots.
  const at::Tensor next = step(m, cache, at::tensor(std::vector<int64_t>{7, 8}).view({2, 1}), all_real(2, 1));
  seqs[0].push_back(7);
  seqs[1].push_back(8);
  for (int64_t b = 0; b < 2; ++b) {
    const at::Tensor full = full_logits(m, seqs[b]);
    EXPECT_LT(max_abs_diff(next[b][0], full[full.size(0) - 1]), kTol) << "row " << b;
  }
  EXPECT_TRUE(at::equal(cache.lengths(), at::tensor(std::vector<int64_t>{7, 4})));
}

TEST(KvCache, OverflowIsAUserErrorAndResetEmptiesRows) {
  const Transformer m = random_model(tiny_config("llama"), 15);
  KvCache cache = KvCache::for_model(m.config(), 1, 4, at::kFloat, at::kCPU);
  step(m, cache, at::randint(53, {1, 3}, at::kLong), all_real(1, 3));
  EXPECT_THROW(step(m, cache, at::randint(53, {1, 2}, at::kLong), all_real(1, 2)), scorch::UserError);
  cache.reset();
  EXPECT_EQ(cache.used(), 0);
  const at::Tensor ids = at::randint(53, {1, 4}, at::kLong);
  const at::Tensor again = step(m, cache, ids, all_real(1, 4));
  EXPECT_LT(max_abs_diff(again, m.logits(m.forward(ids, arange_positions(1, 4)))), kTol);
}

namespace {

// One static-shape decode step (Transformer::decode_step): tokens [B] and a row mask; logits [B, V].
at::Tensor static_step(const Transformer& m, KvCache& cache, const std::vector<int64_t>& tokens,
                       const std::vector<uint8_t>& mask) {
  const int64_t B = static_cast<int64_t>(tokens.size());
  const at::Tensor slot = at::full({1}, cache.used(), at::kLong);
  const at::Tensor token_mask = at::tensor(mask).to(at::kBool).view({B, 1});
  const at::Tensor hidden = m.decode_step(at::tensor(tokens).view({B, 1}), token_mask, slot, cache);
  cache.advance_static_step();
  return m.logits(hidden.select(1, 0));
}

}  // namespace

// The static step (attention over every slot, KV written at a device-side slot index) computes
// what the full forward computes, for left-padded rows of different lengths, for GQA and plain
// multi-head attention, while one row sits a step out; it leaves positions and lengths as the
// dynamic step does.
TEST(KvCache, StaticDecodeStepsMatchFullForwardWhileARowSitsOut) {
  for (int64_t kv_heads : {2, 4}) {
    const Transformer m = random_model(tiny_config("qwen2", false, kv_heads), 16);
    const std::vector<std::vector<int64_t>> prompts = {{4, 9}, {7, 3, 3, 50, 12}, {33, 21, 8}};
    const int64_t P = 5;
    const auto [ids, mask] = left_padded(prompts, P);
    KvCache cache = KvCache::for_model(m.config(), 3, 12, at::kFloat, at::kCPU);
    step(m, cache, ids, mask);  // dynamic prefill
    std::vector<std::vector<int64_t>> seqs = prompts;
    const std::vector<std::vector<int64_t>> tokens = {{5, 6, 7}, {8, 9, 10}, {11, 12, 13}};
    const std::vector<std::vector<uint8_t>> masks = {{1, 1, 1}, {1, 0, 1}, {1, 1, 1}};  // row 1 sits step 2 out
    at::Tensor last;
    for (size_t s = 0; s < tokens.size(); ++s) {
      last = static_step(m, cache, tokens[s], masks[s]);
      for (int64_t b = 0; b < 3; ++b) {
        if (!masks[s][b]) continue;
        seqs[b].push_back(tokens[s][b]);
        const at::Tensor full = full_logits(m, seqs[b]);
        EXPECT_LT(max_abs_diff(last[b], full[full.size(0) - 1]), kTol) << "kv heads " << kv_heads << " step " << s << " row " << b;
      }
    }
    EXPECT_EQ(cache.used(), P + 3);
    EXPECT_TRUE(at::equal(cache.lengths(), at::tensor(std::vector<int64_t>{5, 7, 6})));
    // A dynamic step after static ones sees the same history.
    const at::Tensor next = step(m, cache, at::tensor(std::vector<int64_t>{1, 2, 3}).view({3, 1}), all_real(3, 1));
    for (int64_t b = 0; b < 3; ++b) {
      seqs[b].push_back(b + 1);
      const at::Tensor full = full_logits(m, seqs[b]);
      EXPECT_LT(max_abs_diff(next[b][0], full[full.size(0) - 1]), kTol) << "row " << b;
    }
  }
}

TEST(KvCache, ReserveGrowsTheCacheAndKeepsItsRows) {
  const Transformer m = random_model(tiny_config("llama"), 17);
  KvCache cache = KvCache::for_model(m.config(), 2, 4, at::kFloat, at::kCPU);
  const at::Tensor prompt = at::randint(53, {2, 3}, at::kLong);
  step(m, cache, prompt, all_real(2, 3));
  const int64_t version = cache.version();
  cache.reserve(3);  // shorter than now: nothing happens
  EXPECT_EQ(cache.max_len(), 4);
  EXPECT_EQ(cache.version(), version);
  cache.reserve(10);
  EXPECT_EQ(cache.max_len(), 10);
  EXPECT_NE(cache.version(), version);  // a graph captured on the old tensors is stale
  EXPECT_EQ(cache.free_slots(), 7);
  const at::Tensor turn = at::randint(53, {2, 5}, at::kLong);  // would have overflowed 4 slots
  const at::Tensor out = step(m, cache, turn, all_real(2, 5));
  const at::Tensor all = at::cat({prompt, turn}, 1);
  for (int64_t b = 0; b < 2; ++b) {
    const std::vector<int64_t> seq(all[b].data_ptr<int64_t>(), all[b].data_ptr<int64_t>() + 8);
    EXPECT_LT(max_abs_diff(out[b], full_logits(m, seq).narrow(0, 3, 5)), kTol) << "row " << b;
  }
}
