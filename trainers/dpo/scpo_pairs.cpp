// ScPO pair building (scpo_pairs.h has the rules).
#include "trainers/dpo/scpo_pairs.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/progress.h"
#include "config/config.h"
#include "data/dataset.h"
#include "model/transformer.h"
#include "rewards/math_answer.h"
#include "rollout/engine.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/session.h"
#include "trainers/common/rl_task.h"

namespace scorch::trainers {

const char* scpo_verdict_name(ScpoVerdict v) {
  switch (v) {
    case ScpoVerdict::kKept: return "kept";
    case ScpoVerdict::kBelowThreshold: return "below_threshold";
    case ScpoVerdict::kUnanimous: return "unanimous";
    case ScpoVerdict::kTie: return "tie";
    case ScpoVerdict::kNoAnswer: return "no_answer";
    case ScpoVerdict::kAllCorrect: return "all_correct";
    case ScpoVerdict::kNoneCorrect: return "none_correct";
  }
  return "?";
}

ScpoPairChoice choose_scpo_pair(const std::vector<std::string>& answers, double threshold) {
  const int64_t k = static_cast<int64_t>(answers.size());
  std::vector<std::string> representative;  // per cluster: its first member's answer
  std::vector<int64_t> first, votes;        // per cluster: first member, size
  for (int64_t i = 0; i < k; ++i) {
    const std::string& a = answers[static_cast<size_t>(i)];
    if (a.empty()) continue;
    size_t c = 0;
    while (c < representative.size() && !rewards::math::answers_equal(representative[c], a)) ++c;
    if (c == representative.size()) representative.push_back(a), first.push_back(i), votes.push_back(0);
    ++votes[c];
  }
  ScpoPairChoice out;
  if (representative.empty()) return out;  // kNoAnswer
  size_t top = 0;
  for (size_t c = 1; c < votes.size(); ++c) if (votes[c] > votes[top]) top = c;
  out.chosen = first[top];
  out.top_votes = votes[top];
  out.chosen_answer = representative[top];
  if (votes.size() == 1) {
    out.verdict = ScpoVerdict::kUnanimous;
    return out;
  }
  size_t bottom = top == 0 ? 1 : 0;
  for (size_t c = 0; c < votes.size(); ++c) if (c != top && votes[c] < votes[bottom]) bottom = c;
  out.rejected = first[bottom];
  out.bottom_votes = votes[bottom];
  out.rejected_answer = representative[bottom];
  out.weight = static_cast<double>(out.top_votes - out.bottom_votes) / static_cast<double>(k);
  // τ·k with a small tolerance so that τ = 0.5, k = 8 keeps V+ = 4 despite rounding.
  if (static_cast<double>(out.top_votes) + 1e-9 < threshold * static_cast<double>(k)) out.verdict = ScpoVerdict::kBelowThreshold;
  else if (out.top_votes == out.bottom_votes) out.verdict = ScpoVerdict::kTie;
  else out.verdict = ScpoVerdict::kKept;
  return out;
}

ScpoPairChoice choose_scpo_gold_pair(const std::vector<std::string>& answers, const std::string& gold) {
  const int64_t k = static_cast<int64_t>(answers.size());
  ScpoPairChoice out;
  int64_t unanswered = -1;  // the first response with no answer: y− when every answer is right
  for (int64_t i = 0; i < k; ++i) {
    const std::string& a = answers[static_cast<size_t>(i)];
    if (a.empty()) {
      if (unanswered < 0) unanswered = i;
    } else if (rewards::math::answers_equal(gold, a)) {
      if (out.chosen < 0) out.chosen = i, out.chosen_answer = a;
      ++out.top_votes;
    } else if (out.rejected < 0) {
      out.rejected = i, out.rejected_answer = a;
    }
  }
  out.bottom_votes = k - out.top_votes;
  if (out.rejected < 0) out.rejected = unanswered;
  if (out.chosen < 0) {
    out.verdict = ScpoVerdict::kNoneCorrect;
    out.rejected = -1, out.rejected_answer.clear();
  } else if (out.rejected < 0) {
    out.verdict = ScpoVerdict::kAllCorrect;
  } else {
    out.verdict = ScpoVerdict::kKept;
    out.weight = 1.0;
  }
  return out;
}

void require_gold_answers(const std::vector<data::PromptRecord>& prompts, const std::string& path) {
  const auto lacks_gold = [](const data::PromptRecord& r) {
    return !r.answer || rewards::math::gold_answer(*r.answer).find_first_not_of(" \t\r\n") == std::string::npos;
  };
  const auto first = std::find_if(prompts.begin(), prompts.end(), lacks_gold);
  if (first == prompts.end()) return;
  const auto missing = std::count_if(prompts.begin(), prompts.end(), lacks_gold);
  throw UserError(path + ":" + std::to_string(first->line) + ": this prompt has no gold `answer` (" +
                  std::to_string(missing) + " of " + std::to_string(prompts.size()) +
                  " prompts have none), and `scpo.pairs: gold` picks pairs by the gold answer. Fix: give every "
                  "line of " + path + " an \"answer\", or use `scpo.pairs: vote` (no labels needed)");
}

nlohmann::json ScpoPairStats::to_json() const {
  nlohmann::json j;
  j["prompts"] = prompts;
  j["pairs"] = kept;
  j["kept_fraction"] = prompts > 0 ? static_cast<double>(kept) / static_cast<double>(prompts) : 0.0;
  j["verdicts"] = verdicts;
  nlohmann::json hist = nlohmann::json::object();
  for (const auto& [margin, n] : margin_histogram) hist[std::to_string(margin)] = n;
  j[gold_pairs ? "correct_count_histogram" : "vote_margin_histogram"] = hist;
  j["mean_weight"] = mean_weight;
  if (with_gold > 0) {
    j["pairs_with_gold"] = with_gold;
    j["chosen_accuracy"] = static_cast<double>(chosen_correct) / static_cast<double>(with_gold);
  }
  return j;
}

namespace {

nlohmann::json prompt_json(const data::PromptRecord& r) {
  if (r.prompt.size() == 1 && r.prompt[0].role == "user") return r.prompt[0].content;
  nlohmann::json msgs = nlohmann::json::array();
  for (const ChatMessage& m : r.prompt) msgs.push_back({{"role", m.role}, {"content", m.content}});
  return msgs;
}

}  // namespace

ScpoPairStats build_scpo_pairs(const Config& config, const ModelSession& session,
                               const std::vector<data::PromptRecord>& prompts, double threshold, uint64_t seed,
                               const std::string& out_path) {
  const bool gold_pairs = config.scpo.pairs == ScpoPairs::kGold;
  const Tokenizer& tok = *session.tokenizer;
  const int64_t k = config.scpo.num_samples;
  SamplingParams sp;
  sp.temperature = config.scpo.temperature;
  sp.top_p = config.scpo.top_p;
  sp.max_new_tokens = config.generation.max_completion_length;
  sp.stop_token_ids = session.renderer->stop_ids();
  sp.stop_strings = config.generation.stop;
  sp.n = k;
  const int64_t chunk = std::max<int64_t>(1, config.train.micro_batch_size);
  ScpoPairStats stats;
  stats.gold_pairs = gold_pairs;
  std::string jsonl;
  double weight_sum = 0.0;
  at::NoGradGuard no_grad;
  GenerationEngine engine(*session.model, &tok, rollout_engine_options(config));
  ProgressBar progress("pairs", static_cast<long>(prompts.size()), "prompt");
  for (size_t start = 0; start < prompts.size(); start += static_cast<size_t>(chunk)) {
    const size_t end = std::min(prompts.size(), start + static_cast<size_t>(chunk));
    std::vector<std::vector<int64_t>> ids;
    for (size_t i = start; i < end; ++i) {
      std::vector<int64_t> p = session.renderer->render_prompt(prompts[i].prompt);
      if (static_cast<int64_t>(p.size()) > config.generation.max_prompt_length) {
        p.erase(p.begin(), p.end() - config.generation.max_prompt_length);  // keep the end, as GRPO does
      }
      ids.push_back(std::move(p));
    }
    sp.seed = seed * 1000003ULL + start;  // deterministic per chunk
    const std::vector<Sample> samples = engine.generate(ids, sp);
    for (size_t i = start; i < end; ++i) {
      std::vector<std::string> texts, answers;
      for (int64_t s = 0; s < k; ++s) {
        const Sample& sample = samples[(i - start) * static_cast<size_t>(k) + static_cast<size_t>(s)];
        texts.push_back(tok.decode(sample.completion_ids));
        const auto e = rewards::math::extract_answer(texts.back());
        answers.push_back(e.ok() ? e.answer : "");
      }
      const data::PromptRecord& rec = prompts[i];
      const ScpoPairChoice c = gold_pairs ? choose_scpo_gold_pair(answers, rewards::math::gold_answer(*rec.answer))
                                          : choose_scpo_pair(answers, threshold);
      ++stats.prompts;
      ++stats.verdicts[scpo_verdict_name(c.verdict)];
      if (c.verdict != ScpoVerdict::kKept) continue;
      ++stats.kept;
      ++stats.margin_histogram[gold_pairs ? c.top_votes : c.top_votes - c.bottom_votes];
      weight_sum += c.weight;
      if (rec.answer && !rec.answer->empty()) {
        ++stats.with_gold;
        if (rewards::math::answers_equal(rewards::math::gold_answer(*rec.answer), c.chosen_answer)) ++stats.chosen_correct;
      }
      nlohmann::json line = {{"prompt", prompt_json(rec)},
                             {"chosen", texts[static_cast<size_t>(c.chosen)]},
                             {"rejected", texts[static_cast<size_t>(c.rejected)]},
                             {"weight", c.weight},
                             {"votes", {c.top_votes, c.bottom_votes}},
                             {"answers", {c.chosen_answer, c.rejected_answer}}};
      // Sampled text may end inside a multi-byte character: replace invalid UTF-8.
      jsonl += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    if (config.log.progress) progress.update(static_cast<long>(end), "kept " + std::to_string(stats.kept), static_cast<double>(engine.last_stats().generated_tokens), "tok");
  }
  if (config.log.progress) progress.finish("kept " + std::to_string(stats.kept));
  stats.mean_weight = stats.kept > 0 ? weight_sum / static_cast<double>(stats.kept) : 0.0;
  fs::atomic_write(out_path, jsonl);
  return stats;
}

}  // namespace scorch::trainers
