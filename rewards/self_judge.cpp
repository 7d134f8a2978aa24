// Self-judging rewards (ALGORITHMS.md §6): the policy, a frozen copy or a judge checkpoint — any
// rewards::Judge — scores completions.
//
// `self_verify` (verifier style, S²R): the judge sees [user: prompt, assistant: completion,
//   user: question] through its chat template and the reward is p(Yes) / (p(Yes) + p(No)) of the
//   next token, from one batched forward pass (no sampling, no parsing). p(Yes) sums the
//   probabilities of every `yes_tokens` entry that is a single token (same for No).
//   Params: question ("Is this solution correct? Answer Yes or No.", data::kVerificationQuestion:
//   the question `make-data --with-verification` examples ask), yes_tokens (["Yes", " Yes"]),
//   no_tokens (["No", " No"]), judge ("policy" | "frozen": which model a trainer passes).
//   NaN when the judge puts no mass on Yes or No (counted as `no_mass`).
//   Diagnostics: yes_no_mass (mean p(Yes) + p(No): low means the judge ignores the question).
// `self_rubric` (Self-Rewarding LMs, arXiv 2401.10020): the judge reads an additive 5-point rubric
//   prompt and generates; "Score: N" (the last one, 0 <= N <= 5) is parsed; k judgments are
//   averaged over those that parse; a judgment that does not parse is counted (`parse_failures`)
//   and a sample none of whose k judgments parse is NaN. Params: k (3), temperature (0.7),
//   max_new_tokens (256), seed (0), normalize (true: divide by 5), template (must contain
//   {question} and {response}), judge (policy | frozen).
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>

#include "common/error.h"
#include "data/arith_task.h"
#include "rewards/builtin.h"
#include "rewards/judge.h"

namespace scorch::rewards {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const char* const kRubricTemplate =
    "Review the user's question and the response below, and score the response with the additive "
    "5-point system described here. Points accumulate, one per criterion met:\n"
    "- Add 1 point if the response is relevant and gives some information related to the question, "
    "even if it is incomplete or contains some irrelevant content.\n"
    "- Add a second point if the response addresses a substantial part of the question but does not "
    "completely resolve it or give a direct answer.\n"
    "- Add a third point if the response answers the basic elements of the question in a useful way, "
    "even if it is not exhaustive or reads like generic reference material.\n"
    "- Add a fourth point if the response is clearly written from an AI assistant's perspective, "
    "addresses the question directly and comprehensively, and is well organized and helpful, with "
    "only slight room for improvement in clarity, conciseness or focus.\n"
    "- Add a fifth point if the response is impeccably tailored to the question, free of extraneous "
    "information, and reflects expert knowledge in a high-quality, engaging and insightful answer.\n\n"
    "Question: {question}\n<response>{response}</response>\n\n"
    "After examining the question and the response:\n"
    "- Briefly justify your total score, in up to 100 words.\n"
    "- Conclude with the score in the format: \"Score: <total points>\"";

std::string replace_placeholder(std::string text, const std::string& key, const std::string& value) {
  const size_t p = text.find(key);
  if (p != std::string::npos) text.replace(p, key.size(), value);
  return text;
}

std::vector<int64_t> resolve_tokens(Params& p, Judge& judge, const std::string& key,
                                    const std::vector<std::string>& texts) {
  std::vector<int64_t> ids;
  for (const auto& t : texts) {
    const int64_t id = judge.single_token_id(t);
    if (id >= 0) ids.push_back(id);
  }
  if (ids.empty()) p.fail(key, "none of `" + key + "` is a single token of the judge's vocabulary");
  return ids;
}

class SelfVerify : public Reward {
 public:
  SelfVerify(Params& p, const RewardContext& ctx) {
    question_ = p.text("question", data::kVerificationQuestion, {}, "the verification question");
    const auto yes = p.texts("yes_tokens", {"Yes", " Yes"}, "tokens whose probabilities make p(Yes)");
    const auto no = p.texts("no_tokens", {"No", " No"}, "tokens whose probabilities make p(No)");
    p.text("judge", "policy", {"policy", "frozen"}, "which model judges during training");
    if (!ctx.judge) throw JudgeMissing("self_verify needs --model DIR (a judge model)");
    judge_ = ctx.judge;
    yes_ids_ = resolve_tokens(p, *judge_, "yes_tokens", yes);
    no_ids_ = resolve_tokens(p, *judge_, "no_tokens", no);
  }

  RewardOutput score(const RewardBatch& batch) override {
    const size_t n = batch.samples.size();
    RewardOutput out;
    out.values.assign(n, kNaN);
    std::vector<std::vector<int64_t>> prompts;
    prompts.reserve(n);
    for (const auto& s : batch.samples) {
      prompts.push_back(judge_->render_chat({{"user", s.prompt}, {"assistant", s.completion}, {"user", question_}}));
    }
    std::vector<int64_t> candidates = yes_ids_;
    candidates.insert(candidates.end(), no_ids_.begin(), no_ids_.end());
    const auto logp = judge_->next_token_logprobs(prompts, candidates);  // [n][C]
    if (logp.size() != n) throw std::logic_error("Judge::next_token_logprobs returned a wrong batch size");
    double mass_sum = 0;
    size_t no_mass = 0;
    for (size_t i = 0; i < n; ++i) {
      double p_yes = 0, p_no = 0;
      for (size_t c = 0; c < candidates.size(); ++c) (c < yes_ids_.size() ? p_yes : p_no) += std::exp(logp[i][c]);
      mass_sum += p_yes + p_no;
      if (!(p_yes + p_no > 0)) {
        ++no_mass;
        continue;
      }
      out.values[i] = p_yes / (p_yes + p_no);
    }
    out.diagnostics["yes_no_mass"] = n ? mass_sum / static_cast<double>(n) : kNaN;
    out.diagnostics["no_mass"] = static_cast<double>(no_mass);
    return out;
  }

 private:
  std::shared_ptr<Judge> judge_;
  std::string question_;
  std::vector<int64_t> yes_ids_, no_ids_;
};

class SelfRubric : public Reward {
 public:
  SelfRubric(Params& p, const RewardContext& ctx) {
    k_ = p.integer("k", 3, 1, 64, "judgments per sample, averaged");
    sampling_.temperature = p.number("temperature", 0.7, 0.0, 10.0, "judge sampling temperature");
    sampling_.max_new_tokens = p.integer("max_new_tokens", 256, 1, 1 << 16, "judgment length limit");
    seed_ = static_cast<uint64_t>(p.integer("seed", 0, 0, int64_t{1} << 62, "judge sampling seed"));
    normalize_ = p.flag("normalize", true, "divide the 0..5 score by 5");
    template_ = p.text("template", kRubricTemplate, {}, "judge prompt with {question} and {response}");
    p.text("judge", "policy", {"policy", "frozen"}, "which model judges during training");
    if (template_.find("{question}") == std::string::npos || template_.find("{response}") == std::string::npos) {
      p.fail("template", "`template` must contain {question} and {response}");
    }
    if (!ctx.judge) throw JudgeMissing("self_rubric needs --model DIR (a judge model)");
    judge_ = ctx.judge;
  }

  RewardOutput score(const RewardBatch& batch) override {
    const size_t n = batch.samples.size();
    RewardOutput out;
    out.values.assign(n, kNaN);
    std::vector<std::vector<int64_t>> prompts;
    prompts.reserve(n);
    for (const auto& s : batch.samples) {
      const std::string text =
          replace_placeholder(replace_placeholder(template_, "{question}", s.prompt), "{response}", s.completion);
      prompts.push_back(judge_->render_chat({{"user", text}}));
    }
    std::vector<double> sum(n, 0.0);
    std::vector<size_t> parsed(n, 0);
    size_t failures = 0;
    const uint64_t step = n ? static_cast<uint64_t>(batch.samples[0].step) : 0;
    for (int64_t j = 0; j < k_; ++j) {
      JudgeSampling s = sampling_;
      s.seed = seed_ + step * static_cast<uint64_t>(k_) + static_cast<uint64_t>(j);
      const auto texts = judge_->generate(prompts, s);
      if (texts.size() != n) throw std::logic_error("Judge::generate returned a wrong batch size");
      for (size_t i = 0; i < n; ++i) {
        const double v = parse_rubric_score(texts[i]);
        if (std::isnan(v)) {
          ++failures;
          continue;
        }
        sum[i] += v;
        ++parsed[i];
      }
    }
    for (size_t i = 0; i < n; ++i)
      if (parsed[i]) out.values[i] = sum[i] / static_cast<double>(parsed[i]) / (normalize_ ? 5.0 : 1.0);
    out.diagnostics["parse_failures"] = static_cast<double>(failures);
    return out;
  }

 private:
  std::shared_ptr<Judge> judge_;
  int64_t k_ = 3;
  JudgeSampling sampling_;
  uint64_t seed_ = 0;
  bool normalize_ = true;
  std::string template_;
};

std::mutex& factory_mutex() {
  static std::mutex m;
  return m;
}
JudgeFactory& factory() {
  static JudgeFactory f;
  return f;
}

}  // namespace

double parse_rubric_score(const std::string& text) {
  // The last "score:" (case-insensitive), then optional spaces / markdown '*', then a number.
  size_t best = std::string::npos;
  for (size_t i = 0; i + 6 <= text.size(); ++i) {
    static const char kKey[] = "score:";
    size_t k = 0;
    while (k < 6 && std::tolower(static_cast<unsigned char>(text[i + k])) == kKey[k]) ++k;
    if (k == 6) best = i;
  }
  if (best == std::string::npos) return kNaN;
  size_t i = best + 6;
  while (i < text.size() && (text[i] == ' ' || text[i] == '*' || text[i] == '\t')) ++i;
  const size_t start = i;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == start) return kNaN;
  std::string num = text.substr(start, i - start);
  while (!num.empty() && num.back() == '.') num.pop_back();  // "Score: 4." ends a sentence
  if (num.empty() || num.find('.') != num.rfind('.')) return kNaN;
  const double v = std::strtod(num.c_str(), nullptr);
  if (!(v >= 0.0 && v <= 5.0)) return kNaN;
  return v;
}

void register_judge_factory(JudgeFactory f) {
  std::lock_guard<std::mutex> lock(factory_mutex());
  factory() = std::move(f);
}

std::shared_ptr<Judge> make_judge(const std::string& model_dir) {
  JudgeFactory f;
  {
    std::lock_guard<std::mutex> lock(factory_mutex());
    f = factory();
  }
  if (!f) throw NotImplemented("a model-backed judge for self-judging rewards (--model " + model_dir + ")");
  return f(model_dir);
}

void register_judge_rewards() {
  register_reward("self_verify", {"judge's p(Yes)/(p(Yes)+p(No)) for 'Is this solution correct?'", true,
                                  [](Params& p, const RewardContext& c) { return std::make_unique<SelfVerify>(p, c); }});
  register_reward("self_rubric", {"judge's additive 5-point rubric score, 'Score: N' parsed, k judgments averaged", true,
                                  [](Params& p, const RewardContext& c) { return std::make_unique<SelfRubric>(p, c); }});
}

}  // namespace scorch::rewards
