// GenerationEngine on a tiny random model, against references that use no cache: greedy equals a
// naive loop re-running the full forward at every step (prompts of different lengths in one
// batch), sampling log-probs equal log_softmax(logits / T) from a full forward, temperature-1
// samples follow the model's softmax (chi-square), stop ids / stop strings / max_new_tokens end
// samples with the right finish reason, bad input is a UserError.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <set>

#include "common/error.h"
#include "rollout/engine.h"
#include "rollout_fixtures.h"

namespace scorch {
namespace {

using test::ByteTokenizer;
using test::concat;
using test::full_forward_last_logits;
using test::full_forward_logits;
using test::tiny_model;

const std::vector<std::vector<int64_t>> kPrompts = {
    {5, 17, 200}, {42}, {9, 9, 100, 31, 77, 12, 250, 3, 64, 128, 1, 2}, {70, 71, 72, 73, 74, 75, 76}};

// Greedy decoding by recomputing the whole sequence at every step (no cache, batch of one).
std::vector<int64_t> naive_greedy(const Transformer& model, const std::vector<int64_t>& prompt, int64_t max_new,
                                  int64_t eos) {
  std::vector<int64_t> seq = prompt, out;
  for (int64_t t = 0; t < max_new; ++t) {
    const int64_t next = full_forward_last_logits(model, seq).argmax().item<int64_t>();
    out.push_back(next);
    seq.push_back(next);
    if (next == eos) break;
  }
  return out;
}

TEST(Engine, GreedyEqualsNaiveFullRecomputeForMixedLengthBatch) {
  const Transformer model = tiny_model();
  for (bool compact : {true, false}) {
    EngineOptions opts;
    opts.compact = compact;
    GenerationEngine engine(model, nullptr, opts);
    SamplingParams p;
    p.temperature = 0;
    p.max_new_tokens = 20;
    const auto samples = engine.generate(kPrompts, p);
    ASSERT_EQ(samples.size(), kPrompts.size());
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      EXPECT_EQ(samples[i].prompt_index, static_cast<int64_t>(i));
      EXPECT_EQ(samples[i].completion_ids, naive_greedy(model, kPrompts[i], 20, 0)) << "prompt " << i << " compact " << compact;
      EXPECT_EQ(samples[i].logprobs.size(), samples[i].completion_ids.size());
    }
  }
}

TEST(Engine, GreedyOfAPromptDoesNotDependOnItsBatchmates) {
  const Transformer model = tiny_model();
  GenerationEngine engine(model);
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 16;
  const auto alone = engine.generate({kPrompts[0]}, p);
  const auto batched = engine.generate({kPrompts[2], kPrompts[0], kPrompts[1]}, p);
  EXPECT_EQ(alone[0].completion_ids, batched[1].completion_ids);
  for (size_t t = 0; t < alone[0].logprobs.size(); ++t) EXPECT_NEAR(alone[0].logprobs[t], batched[1].logprobs[t], 1e-5);
}

TEST(Engine, SamplingLogprobsEqualTemperatureScaledLogSoftmaxOfAFullForward) {
  const Transformer model = tiny_model();
  GenerationEngine engine(model);
  for (double top_p : {1.0, 0.7}) {
    SamplingParams p;
    p.temperature = 0.7;
    p.top_p = top_p;
    p.top_k = top_p < 1 ? 20 : 0;
    p.n = 3;
    p.max_new_tokens = 12;
    p.seed = 123;
    const auto samples = engine.generate({kPrompts[0], kPrompts[2]}, p);
    ASSERT_EQ(samples.size(), 6u);
    for (const auto& s : samples) {
      const auto& prompt = s.prompt_index == 0 ? kPrompts[0] : kPrompts[2];
      ASSERT_FALSE(s.completion_ids.empty());
      const at::Tensor logits = full_forward_logits(model, concat(prompt, s.completion_ids));  // [L, V]
      const int64_t P = static_cast<int64_t>(prompt.size());
      const at::Tensor logp = (logits / 0.7).log_softmax(-1);
      for (size_t t = 0; t < s.completion_ids.size(); ++t) {
        const float ref = logp[P - 1 + static_cast<int64_t>(t)][s.completion_ids[t]].item<float>();
        EXPECT_NEAR(s.logprobs[t], ref, 1e-5) << "top_p " << top_p << " token " << t;
      }
    }
  }
}

TEST(Engine, GroupSamplesDifferAndSameSeedReproduces) {
  const Transformer model = tiny_model();
  GenerationEngine engine(model);
  SamplingParams p;
  p.n = 4;
  p.max_new_tokens = 10;
  p.seed = 9;
  const auto a = engine.generate({kPrompts[1]}, p), b = engine.generate({kPrompts[1]}, p);
  ASSERT_EQ(a.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(a[i].sample_index, static_cast<int64_t>(i));
    EXPECT_EQ(a[i].completion_ids, b[i].completion_ids);
  }
  EXPECT_NE(a[0].completion_ids, a[1].completion_ids);  // 257-way draws: equal 10-token runs are ~impossible
  p.seed = 10;
  EXPECT_NE(engine.generate({kPrompts[1]}, p)[0].completion_ids, a[0].completion_ids);
}

TEST(Engine, TopKOneEqualsGreedy) {
  const Transformer model = tiny_model();
  GenerationEngine engine(model);
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 15;
  SamplingParams k1 = greedy;
  k1.temperature = 1.3;
  k1.top_k = 1;
  k1.n = 2;
  const auto g = engine.generate(kPrompts, greedy);
  const auto s = engine.generate(kPrompts, k1);
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    EXPECT_EQ(s[2 * i].completion_ids, g[i].completion_ids);
    EXPECT_EQ(s[2 * i + 1].completion_ids, g[i].completion_ids);
  }
}

// Pearson chi-square of observed counts against expected probabilities, pooling bins whose expected
// count is below 5 (the usual validity condition). Returns {statistic, degrees of freedom}.
std::pair<double, int64_t> chi_square(const std::vector<int64_t>& counts, const at::Tensor& probs, int64_t draws) {
  double stat = 0, pooled_obs = 0, pooled_exp = 0;
  int64_t bins = 0;
  for (size_t v = 0; v < counts.size(); ++v) {
    const double e = probs[static_cast<int64_t>(v)].item<double>() * draws;
    if (e < 5) {
      pooled_obs += counts[v];
      pooled_exp += e;
      continue;
    }
    stat += (counts[v] - e) * (counts[v] - e) / e;
    ++bins;
  }
  if (pooled_exp > 0) {
    stat += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / pooled_exp;
    ++bins;
  }
  return {stat, bins - 1};
}

TEST(Engine, TemperatureOneSamplesFollowTheModelSoftmaxChiSquare) {
  // Vocabulary 16 and no EOS, so every token is a possible first draw and the counts are large.
  const Transformer model = tiny_model(/*vocab=*/16, /*seed=*/21, /*context=*/32, /*eos=*/{});
  GenerationEngine engine(model);
  const std::vector<int64_t> prompt = {3, 1, 4, 1, 5};
  SamplingParams p;
  p.n = 20000;
  p.max_new_tokens = 1;
  p.seed = 2024;
  const auto samples = engine.generate({prompt}, p);
  std::vector<int64_t> counts(16, 0);
  for (const auto& s : samples) counts[s.completion_ids.at(0)]++;
  const at::Tensor logits = full_forward_last_logits(model, prompt).to(at::kDouble);
  const auto [stat, dof] = chi_square(counts, logits.softmax(-1), p.n);
  ASSERT_EQ(dof, 15) << "the test model's distribution should have no rare tokens";
  // 99.9% quantile of chi-square with 15 degrees of freedom: a correct sampler fails 1 run in 1000
  // (and this seed is fixed).
  const double critical = 37.70;
  EXPECT_LT(stat, critical);
  // The test has power: the same counts are rejected against a slightly wrong temperature (0.9).
  EXPECT_GT(chi_square(counts, (logits / 0.9).softmax(-1), p.n).first, critical);
}

TEST(Engine, StopIdEndsWithStopAndEosEndsWithEos) {
  const Transformer model = tiny_model();
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 24;
  const auto full = GenerationEngine(model).generate({kPrompts[3]}, p)[0].completion_ids;
  ASSERT_GE(full.size(), 8u) << "pick a prompt whose greedy completion does not end early";
  // A token whose first occurrence is at index >= 2.
  size_t k = 2;
  while (std::find(full.begin(), full.begin() + k, full[k]) != full.begin() + k) ++k;
  const std::vector<int64_t> expected(full.begin(), full.begin() + k + 1);

  SamplingParams stop = p;
  stop.stop_token_ids = {full[k]};
  const auto s = GenerationEngine(model).generate({kPrompts[3]}, stop)[0];
  EXPECT_EQ(s.completion_ids, expected);
  EXPECT_EQ(s.finish_reason, FinishReason::kStop);

  EngineOptions eos;
  eos.extra_eos_ids = {full[k]};
  const auto e = GenerationEngine(model, nullptr, eos).generate({kPrompts[3]}, p)[0];
  EXPECT_EQ(e.completion_ids, expected);
  EXPECT_EQ(e.finish_reason, FinishReason::kEos);
}

TEST(Engine, StopStringSpanningTwoTokensEndsTheSample) {
  const Transformer model = tiny_model();
  const ByteTokenizer tok;
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 24;
  GenerationEngine engine(model, &tok);
  const auto full = engine.generate({kPrompts[3]}, p)[0].completion_ids;
  ASSERT_GE(full.size(), 8u);
  // The two-byte string of tokens (k, k+1): each byte is its own token, so it spans two tokens.
  // Take the first k >= 2 whose pair does not already occur earlier in the text.
  const std::string text = tok.decode(full);
  size_t k = 2;
  while (text.find(text.substr(k, 2)) < k) ++k;
  ASSERT_LT(k + 1, full.size());
  SamplingParams stop = p;
  stop.stop_strings = {"never-present", text.substr(k, 2)};
  const auto s = engine.generate({kPrompts[3], kPrompts[0]}, stop);
  EXPECT_EQ(s[0].completion_ids, std::vector<int64_t>(full.begin(), full.begin() + k + 2));
  EXPECT_EQ(s[0].finish_reason, FinishReason::kStop);
  // The other prompt is unaffected by its batchmate stopping.
  EXPECT_EQ(s[1].completion_ids, engine.generate({kPrompts[0]}, p)[0].completion_ids);
}

TEST(Engine, MaxNewTokensAndContextLengthEndWithLength) {
  const Transformer model = tiny_model(257, 7, /*context=*/20);
  GenerationEngine engine(model);
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 5;
  const auto s = engine.generate({kPrompts[0]}, p)[0];
  EXPECT_EQ(s.completion_ids.size(), 5u);
  EXPECT_EQ(s.finish_reason, FinishReason::kLength);
  // A 12-token prompt in a context of 20 leaves 8 tokens, fewer than max_new_tokens = 30.
  p.max_new_tokens = 30;
  const auto c = engine.generate({kPrompts[2]}, p)[0];
  EXPECT_EQ(c.completion_ids.size(), 8u);
  EXPECT_EQ(c.finish_reason, FinishReason::kLength);
}

TEST(Engine, CompactionDropsFinishedRowsAndSavesRowSteps) {
  const Transformer model = tiny_model();
  SamplingParams p;
  p.n = 8;
  p.max_new_tokens = 30;
  p.seed = 5;
  // Many stop ids: rows finish at different steps.
  for (int64_t id = 1; id < 257; id += 9) p.stop_token_ids.push_back(id);
  EngineOptions masked;
  masked.compact = false;
  GenerationEngine compacting(model), masking(model, nullptr, masked);
  const auto a = compacting.generate(kPrompts, p);
  const auto b = masking.generate(kPrompts, p);
  EXPECT_GT(compacting.last_stats().compactions, 0);
  EXPECT_LT(compacting.last_stats().row_steps, masking.last_stats().row_steps);
  int64_t generated = 0;
  for (const auto& s : a) generated += static_cast<int64_t>(s.completion_ids.size());
  EXPECT_EQ(compacting.last_stats().generated_tokens, generated);
  // Every row still ends for a reason the params allow.
  for (const auto& s : a) {
    if (s.finish_reason == FinishReason::kLength) EXPECT_EQ(s.completion_ids.size(), 30u);
    else EXPECT_TRUE(std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), s.completion_ids.back()) != p.stop_token_ids.end() ||
                     s.completion_ids.back() == 0);
  }
}

// Static-shape decode steps (the CUDA-graph path; eager here on the CPU) give the naive loop's
// greedy tokens for a mixed-length batch and the same log-probs as dynamic steps, compacted or not.
TEST(Engine, StaticDecodeStepsEqualTheNaiveLoopAndDynamicSteps) {
  const Transformer model = tiny_model();
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 20;
  GenerationEngine dynamic(model);
  const auto reference = dynamic.generate(kPrompts, p);
  EXPECT_EQ(dynamic.last_stats().static_steps, 0);
  {
    EngineOptions graphs;
    graphs.decode_steps = DecodeSteps::kCudaGraph;
    EXPECT_THROW(GenerationEngine(model, nullptr, graphs), UserError) << "CUDA graphs asked for on the CPU";
  }
  for (DecodeSteps mode : {DecodeSteps::kStatic}) {
    for (bool compact : {true, false}) {
      EngineOptions opts;
      opts.decode_steps = mode;
      opts.compact = compact;
      GenerationEngine engine(model, nullptr, opts);
      ASSERT_TRUE(engine.static_decode_steps());
      const auto samples = engine.generate(kPrompts, p);
      const GenerationStats& st = engine.last_stats();
      EXPECT_EQ(st.static_steps, st.decode_steps);
      EXPECT_GT(st.static_steps, 0);
      EXPECT_EQ(st.graph_captures, 0) << "no CUDA graphs on the CPU";
      for (size_t i = 0; i < kPrompts.size(); ++i) {
        EXPECT_EQ(samples[i].completion_ids, naive_greedy(model, kPrompts[i], 20, 0))
            << decode_steps_name(mode) << " compact " << compact << " prompt " << i;
        ASSERT_EQ(samples[i].logprobs.size(), reference[i].logprobs.size());
        for (size_t t = 0; t < samples[i].logprobs.size(); ++t) {
          EXPECT_NEAR(samples[i].logprobs[t], reference[i].logprobs[t], 1e-5) << "prompt " << i << " token " << t;
        }
      }
    }
  }
}

// EngineOptions::fused_decode_attention: on the CPU decode_attention is the same ops as the unfused
// static step (rope_kv_write, SDPA), so the engine's tokens and log-probs are identical, greedy and
// sampled (n = 3, compacted and masked rows), and every step still goes through the static decoder.
TEST(Engine, FusedDecodeAttentionChangesNoTokenOnTheCpu) {
  const Transformer model = tiny_model();
  for (const double temperature : {0.0, 1.1}) {
    SamplingParams p;
    p.temperature = temperature;
    p.max_new_tokens = 16;
    p.n = temperature > 0 ? 3 : 1;
    p.seed = 5;
    EngineOptions plain;
    plain.decode_steps = DecodeSteps::kStatic;
    EngineOptions fused = plain;
    fused.fused_decode_attention = true;
    GenerationEngine a(model, nullptr, plain), b(model, nullptr, fused);
    const auto x = a.generate(kPrompts, p), y = b.generate(kPrompts, p);
    EXPECT_EQ(b.last_stats().static_steps, b.last_stats().decode_steps);
    test::expect_same_samples(x, y, "T " + std::to_string(temperature), 0.0);
  }
}

// EngineOptions::lookahead (static steps queue the next step before reading this step's tokens):
// the same tokens and log-probs as without it on workloads where rows finish at varied steps -- stop
// ids (masked rows, then compactions of a static batch), EOS, budgets, n samples per prompt, greedy
// and sampled -- with the same compactions and row-steps, and at most one forward more (the step
// queued when every row had just finished).
TEST(Engine, LookaheadStaticStepsGiveTheSameSamples) {
  const Transformer model = tiny_model(257, 7, /*context=*/64);
  const std::vector<std::vector<int64_t>> prompts = test::staggered_prompts();
  for (const double temperature : {0.0, 1.0}) {
    for (const int64_t stop_every : {int64_t{0}, int64_t{17}}) {
      SamplingParams p;
      p.temperature = temperature;
      p.max_new_tokens = 24;
      p.n = temperature > 0 ? 2 : 1;
      p.seed = 11;
      for (int64_t v = stop_every; stop_every > 0 && v < 257; v += stop_every) p.stop_token_ids.push_back(v);
      EngineOptions plain;
      plain.decode_steps = DecodeSteps::kStatic;
      plain.lookahead = false;
      EngineOptions ahead = plain;
      ahead.lookahead = true;
      GenerationEngine a(model, nullptr, plain), b(model, nullptr, ahead);
      const auto x = a.generate(prompts, p), y = b.generate(prompts, p);
      const std::string where = "T " + std::to_string(temperature) + " stop every " + std::to_string(stop_every);
      const GenerationStats &sa = a.last_stats(), &sb = b.last_stats();
      EXPECT_EQ(sa.compactions, sb.compactions) << where;
      EXPECT_EQ(sa.row_steps, sb.row_steps) << where;
      EXPECT_GE(sb.decode_steps, sa.decode_steps) << where;
      EXPECT_LE(sb.decode_steps, sa.decode_steps + 1) << where;
      EXPECT_EQ(sb.static_steps, sb.decode_steps) << where;
      test::expect_same_samples(x, y, where, 1e-5);
      std::set<std::string> reasons;
      for (const Sample& s : y) reasons.insert(finish_reason_name(s.finish_reason));
      if (stop_every > 0) EXPECT_EQ(reasons.size(), 3u) << where << ": rows should end by eos, stop and length";
      if (stop_every > 0) EXPECT_GE(sb.compactions, 1) << where;
    }
  }
}

// A static-step batch is compacted only when at most half of its rows still run (each compaction
// costs a CUDA-graph capture): rows that end at budgets 36, 32, ..., 8 (context 40, no EOS) give
// 3 compactions for 8 rows (8 -> 4 -> 2 -> 1) where dynamic steps compact at every finish (7);
// every row's tokens still equal the naive loop's.
TEST(Engine, StaticStepsCompactOnlyWhenHalfTheBatchFinished) {
  const Transformer model = tiny_model(257, 7, /*context=*/40, /*eos=*/{});
  const std::vector<std::vector<int64_t>> prompts = test::staggered_prompts();
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 64;  // every row ends at its context budget, 40 - prompt length
  EngineOptions static_opts;
  static_opts.decode_steps = DecodeSteps::kStatic;
  GenerationEngine dynamic(model), stat(model, nullptr, static_opts);
  const auto a = dynamic.generate(prompts, p);
  const auto b = stat.generate(prompts, p);
  EXPECT_EQ(dynamic.last_stats().compactions, 7);
  EXPECT_EQ(stat.last_stats().compactions, 3);
  EXPECT_GT(stat.last_stats().row_steps, dynamic.last_stats().row_steps);  // finished rows sat out meanwhile
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t budget = 40 - static_cast<int64_t>(prompts[i].size());
    ASSERT_EQ(static_cast<int64_t>(b[i].completion_ids.size()), budget) << "prompt " << i;
    EXPECT_EQ(b[i].finish_reason, FinishReason::kLength);
    EXPECT_EQ(b[i].completion_ids, a[i].completion_ids) << "prompt " << i;
    EXPECT_EQ(b[i].completion_ids, naive_greedy(model, prompts[i], budget, -1)) << "prompt " << i;
  }
}

TEST(Engine, DecodeStepNamesParseAndBadNamesAreUserErrors) {
  for (DecodeSteps s : {DecodeSteps::kAuto, DecodeSteps::kDynamic, DecodeSteps::kStatic, DecodeSteps::kCudaGraph}) {
    EXPECT_EQ(parse_decode_steps(decode_steps_name(s)), s);
  }
  EXPECT_THROW(parse_decode_steps("graph"), UserError);
  const Transformer model = tiny_model();
  EXPECT_FALSE(GenerationEngine(model).static_decode_steps()) << "auto = dynamic steps on the CPU";
  for (DecodeSteps s : {DecodeSteps::kAuto, DecodeSteps::kDynamic}) {  // the fused kernel would be ignored
    EngineOptions o;
    o.decode_steps = s;
    o.fused_decode_attention = true;
    EXPECT_THROW(GenerationEngine(model, nullptr, o), UserError) << decode_steps_name(s);
  }
  // The refusal names the settings as the user wrote them: config keys, or the CLI's flags.
  auto message = [&](bool cli) {
    EngineOptions o;
    o.decode_steps = DecodeSteps::kDynamic;
    o.fused_decode_attention = true;
    o.settings_from_cli = cli;
    try {
      GenerationEngine engine(model, nullptr, o);
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(false).find("generation.fused_decode_attention"), std::string::npos) << message(false);
  EXPECT_NE(message(false).find("generation.decode_steps `dynamic`"), std::string::npos) << message(false);
  EXPECT_EQ(message(false).find("--"), std::string::npos) << message(false);
  EXPECT_NE(message(true).find("--fused-decode-attention"), std::string::npos) << message(true);
  EXPECT_NE(message(true).find("--decode-steps `dynamic`"), std::string::npos) << message(true);
}

// The step profile times the parts of each decode step without changing what is generated: the
// same samples, every part positive, and the parts adding up to no more than the decode time
// (they are laps of one clock inside it); without it the parts stay 0.
TEST(Engine, StepProfileTimesThePartsAndChangesNoToken) {
  const Transformer model = tiny_model();
  SamplingParams p;
  p.n = 2;
  p.max_new_tokens = 12;
  p.seed = 4;
  GenerationEngine plain(model);
  EngineOptions o;
  o.profile_steps = true;
  GenerationEngine profiled(model, nullptr, o);
  const auto a = plain.generate({{5, 6, 7}, {9}}, p);
  const GenerationStats quiet = plain.last_stats();
  const auto b = profiled.generate({{5, 6, 7}, {9}}, p);
  const GenerationStats st = profiled.last_stats();
  test::expect_same_samples(a, b, "profiled", 0.0);
  EXPECT_EQ(quiet.step_forward_seconds + quiet.step_sample_seconds + quiet.step_host_seconds, 0.0);
  EXPECT_GT(st.step_forward_seconds, 0.0);
  EXPECT_GT(st.step_sample_seconds, 0.0);
  EXPECT_GT(st.step_host_seconds, 0.0);
  EXPECT_LE(st.step_forward_seconds + st.step_sample_seconds + st.step_host_seconds, st.decode_seconds + 1e-6);
}

// Weights that are not finite make every logit NaN: sampling draws no token (-1 from either
// sampler) and generation stops with NonFiniteStop (exit 3) naming the step, instead of feeding an
// invalid id to the embedding.
TEST(Engine, NonFiniteLogitsStopGenerationWithANonFiniteError) {
  Transformer model = tiny_model();
  model.norm_.fill_(std::numeric_limits<float>::quiet_NaN());
  GenerationEngine engine(model);
  SamplingParams p;
  p.max_new_tokens = 4;
  try {
    engine.generate({{1, 2, 3}}, p);
    FAIL() << "expected NonFiniteStop";
  } catch (const NonFiniteStop& e) {
    EXPECT_NE(std::string(e.what()).find("decode step 0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
}

TEST(Engine, BadInputIsAUserError) {
  const Transformer model = tiny_model(257, 7, /*context=*/16);
  GenerationEngine engine(model);
  SamplingParams p;
  EXPECT_THROW(engine.generate({}, p), UserError);
  EXPECT_THROW(engine.generate({{1, 2}, {}}, p), UserError);                        // empty prompt
  EXPECT_THROW(engine.generate({std::vector<int64_t>(16, 3)}, p), UserError);       // no room in context
  EXPECT_THROW(engine.generate({{1, 300}}, p), UserError);                          // outside vocabulary
  SamplingParams bad = p;
  bad.n = 0;
  EXPECT_THROW(engine.generate({{1, 2}}, bad), UserError);
  bad = p;
  bad.temperature = -1;
  EXPECT_THROW(engine.generate({{1, 2}}, bad), UserError);
  bad = p;
  bad.top_p = 0;
  EXPECT_THROW(engine.generate({{1, 2}}, bad), UserError);
  bad = p;
  bad.stop_strings = {"x"};  // no tokenizer to decode with
  EXPECT_THROW(engine.generate({{1, 2}}, bad), UserError);
}

}  // namespace
}  // namespace scorch
