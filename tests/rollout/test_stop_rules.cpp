// StopRules on token lists alone (no model): which rule ends a row and in what order they apply —
// eos before stop ids and stop strings, those before the budget; stop strings match only when they
// end in the newest token's window, and need a tokenizer.
#include <gtest/gtest.h>

#include "common/error.h"
#include "rollout/stop_rules.h"
#include "rollout_fixtures.h"

namespace scorch {
namespace {

using test::ByteTokenizer;

std::vector<int64_t> bytes(const std::string& text) { return ByteTokenizer().encode(text); }

TEST(StopRules, EosThenStopIdsThenBudgetNameTheReason) {
  SamplingParams params;
  params.stop_token_ids = {7, 9};
  const StopRules rules(/*eos_ids=*/{3}, /*extra_eos_ids=*/{9}, params, nullptr);
  EXPECT_EQ(rules.finished({5, 6}, 10), std::nullopt);
  EXPECT_EQ(rules.finished({5, 3}, 10), FinishReason::kEos);
  EXPECT_EQ(rules.finished({5, 7}, 10), FinishReason::kStop);
  EXPECT_EQ(rules.finished({5, 9}, 10), FinishReason::kEos) << "an extra eos id that is also a stop id is eos";
  EXPECT_EQ(rules.finished({5, 6}, 2), FinishReason::kLength);
  EXPECT_EQ(rules.finished({5, 3}, 2), FinishReason::kEos) << "the last token's own rule wins over the budget";
  EXPECT_EQ(rules.finished({3, 6}, 10), std::nullopt) << "only the newest token is checked for ids";
}

TEST(StopRules, StopStringsMatchTheTextEndingInTheNewestToken) {
  const ByteTokenizer tok;
  SamplingParams params;
  params.stop_strings = {"never", "END"};
  const StopRules rules({}, {}, params, &tok);
  EXPECT_EQ(rules.finished(bytes("the EN"), 100), std::nullopt);
  EXPECT_EQ(rules.finished(bytes("the END"), 100), FinishReason::kStop);
  EXPECT_EQ(rules.finished(bytes("a long text before the END"), 100), FinishReason::kStop);
}

TEST(StopRules, StopStringsWithoutATokenizerAreAUserError) {
  SamplingParams params;
  params.stop_strings = {"END"};
  EXPECT_THROW(StopRules({}, {}, params, nullptr), UserError);
}

TEST(StopRules, FinishReasonNames) {
  EXPECT_STREQ(finish_reason_name(FinishReason::kEos), "eos");
  EXPECT_STREQ(finish_reason_name(FinishReason::kStop), "stop");
  EXPECT_STREQ(finish_reason_name(FinishReason::kLength), "length");
}

}  // namespace
}  // namespace scorch
