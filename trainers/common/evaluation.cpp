#include "trainers/common/evaluation.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>

#include "common/error.h"
#include "common/strings.h"
#include "config/config.h"
#include "data/dataset.h"
#include "model/transformer.h"
#include "rewards/math_answer.h"
#include "rollout/engine.h"
#include "rollout/episode.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace scorch {

nlohmann::json EvalReport::to_json() const {
  nlohmann::json j;
  j["n"] = n;
  if (attempts_reported > 1) {
    j["accuracy_t1"] = accuracy;
    j["accuracy_t2"] = accuracy_t2;
    j["delta"] = delta;
    j["delta_i_to_c"] = delta_i_to_c;
    j["delta_c_to_i"] = delta_c_to_i;
    j["edit_distance"] = edit_distance;
    j["changed_fraction"] = changed_fraction;
  } else {
    j["accuracy"] = accuracy;
    j["no_answer_fraction"] = no_answer_fraction;
    if (samples_per_problem > 1) {
      j["samples"] = samples_per_problem;
      j["pass_at_k"] = pass_at_k;
      j["maj_at_k"] = maj_at_k;
    }
  }
  return j;
}

CorrectionCounts correction_metrics(const std::vector<bool>& t1, const std::vector<bool>& t2) {
  if (t1.size() != t2.size()) throw std::invalid_argument("correction_metrics: outcome lists differ in length");
  CorrectionCounts c{0, 0, 0, 0, 0};
  if (t1.empty()) return c;
  double a1 = 0, a2 = 0, ic = 0, ci = 0;
  for (size_t i = 0; i < t1.size(); ++i) {
    a1 += t1[i];
    a2 += t2[i];
    ic += (!t1[i] && t2[i]);
    ci += (t1[i] && !t2[i]);
  }
  const double n = static_cast<double>(t1.size());
  c.accuracy_t1 = a1 / n;
  c.accuracy_t2 = a2 / n;
  c.delta = c.accuracy_t2 - c.accuracy_t1;
  c.delta_i_to_c = ic / n;
  c.delta_c_to_i = ci / n;
  return c;
}

std::string majority_answer(const std::vector<std::string>& answers) {
  std::vector<std::string> representative;
  std::vector<size_t> count;
  for (const auto& a : answers) {
    if (a.empty()) continue;
    size_t c = 0;
    while (c < representative.size() && !rewards::math::answers_equal(representative[c], a)) ++c;
    if (c == representative.size()) {
      representative.push_back(a);
      count.push_back(0);
    }
    ++count[c];
  }
  size_t best = 0;
  for (size_t c = 1; c < count.size(); ++c)
    if (count[c] > count[best]) best = c;
  return representative.empty() ? std::string() : representative[best];
}

namespace {
struct Judged {
  bool correct = false;
  bool has_answer = false;
  std::string answer;
};

Judged judge(const std::string& completion, const std::string& gold) {
  Judged j;
  const auto extraction = rewards::math::extract_answer(completion);
  j.has_answer = extraction.ok();
  if (j.has_answer) {
    j.answer = extraction.answer;
    j.correct = rewards::math::answers_equal(rewards::math::gold_answer(gold), extraction.answer);
  }
  return j;
}
}  // namespace

EvalReport evaluate_accuracy(const Transformer& model, const ChatRenderer& renderer,
                             const std::vector<data::PromptRecord>& prompts, const EvalOptions& options) {
  if (options.attempts < 1 || options.attempts > 2) throw UserError("evaluation supports 1 or 2 attempts");
  at::NoGradGuard no_grad;
  if (options.samples < 1) throw UserError("evaluation: samples per problem must be >= 1");
  if (options.samples > 1 && (options.attempts != 1 || options.temperature <= 0)) {
    throw UserError("evaluation: several samples per problem need attempts = 1 and a temperature > 0 "
                    "(greedy samples would all be the same)");
  }
  EvalReport report;
  report.attempts_reported = options.attempts;
  report.samples_per_problem = options.samples;
  report.n = static_cast<int64_t>(prompts.size());
  if (prompts.empty()) return report;

  EngineOptions engine_options;
  engine_options.decode_steps = options.decode_steps;
  engine_options.settings_from_cli = options.settings_from_cli;
  GenerationEngine engine(model, &renderer.tokenizer(), engine_options);
  SamplingParams params;
  params.temperature = options.temperature;
  params.top_p = options.top_p;
  params.max_new_tokens = options.max_new_tokens;
  params.seed = options.seed;
  params.stop_token_ids = renderer.stop_ids();

  std::vector<bool> t1, t2;
  double edit_sum = 0, changed = 0, no_answer = 0;
  const size_t batch = static_cast<size_t>(std::max<int64_t>(1, options.batch_size));
  if (options.samples > 1) {  // K samples per problem: mean@K, pass@K, maj@K
    params.n = options.samples;
    double right = 0, passed = 0, majority_right = 0, samples_total = 0;
    for (size_t start = 0; start < prompts.size(); start += batch) {
      const size_t end = std::min(prompts.size(), start + batch);
      std::vector<std::vector<int64_t>> ids;
      for (size_t i = start; i < end; ++i) ids.push_back(renderer.render_prompt(prompts[i].prompt));
      const auto samples = engine.generate(ids, params);  // ordered by (prompt, sample)
      for (size_t p = 0; p < ids.size(); ++p) {
        const auto& record = prompts[start + p];
        const std::string gold = *record.answer;
        std::vector<std::string> answers;
        bool any = false;
        for (int64_t k = 0; k < options.samples; ++k) {
          const auto& s = samples[p * static_cast<size_t>(options.samples) + static_cast<size_t>(k)];
          const std::string text = renderer.tokenizer().decode(s.completion_ids);
          const Judged j = judge(text, gold);
          right += j.correct;
          any = any || j.correct;
          no_answer += !j.has_answer;
          samples_total += 1;
          answers.push_back(j.has_answer ? j.answer : std::string());
          if (static_cast<int64_t>(report.samples.size()) < options.keep_samples) {
            report.samples.push_back({{"prompt", record.prompt_text}, {"answer", gold}, {"sample_index", k},
                                      {"attempt1", text}, {"correct1", j.correct}});
          }
        }
        passed += any;
        const std::string majority = majority_answer(answers);
        majority_right += !majority.empty() && rewards::math::answers_equal(rewards::math::gold_answer(gold), majority);
      }
    }
    const double n = static_cast<double>(prompts.size());
    report.accuracy = right / samples_total;
    report.no_answer_fraction = no_answer / samples_total;
    report.pass_at_k = passed / n;
    report.maj_at_k = majority_right / n;
    return report;
  }
  for (size_t start = 0; start < prompts.size(); start += batch) {
    const size_t end = std::min(prompts.size(), start + batch);
    std::vector<std::vector<int64_t>> ids;
    for (size_t i = start; i < end; ++i) ids.push_back(renderer.render_prompt(prompts[i].prompt));
    const std::string instruction = options.correction_instruction;
    Environment env = [&](const FinishedTurn& turn) {
      if (options.attempts > turn.turn) return EnvironmentReply::user(instruction);
      return EnvironmentReply::finish();
    };
    EpisodeOptions episode_options;
    episode_options.max_turns = options.attempts;
    const auto episodes = run_episodes(engine, renderer, ids, params, env, episode_options);
    for (const auto& e : episodes) {
      const auto& record = prompts[start + static_cast<size_t>(e.prompt_index)];
      const std::string& gold = *record.answer;
      const Judged first = judge(e.turns.at(0).text, gold);
      t1.push_back(first.correct);
      no_answer += !first.has_answer;
      nlohmann::json sample;
      if (static_cast<int64_t>(report.samples.size()) < options.keep_samples) {
        sample = {{"prompt", record.prompt_text}, {"answer", gold}, {"attempt1", e.turns[0].text}, {"correct1", first.correct}};
      }
      if (options.attempts > 1) {
        const std::string second_text = e.turns.size() > 1 ? e.turns[1].text : std::string();
        const Judged second = judge(second_text, gold);
        t2.push_back(second.correct);
        if (e.turns.size() > 1) {
          const auto& t = e.tokens;
          std::vector<long> a(t.begin() + e.turns[0].begin, t.begin() + e.turns[0].end);
          std::vector<long> b(t.begin() + e.turns[1].begin, t.begin() + e.turns[1].end);
          edit_sum += static_cast<double>(edit_distance(a, b));
        }
        changed += (first.has_answer != second.has_answer) ||
                   (first.has_answer && !rewards::math::answers_equal(first.answer, second.answer));
        if (!sample.is_null()) {
          sample["attempt2"] = second_text;
          sample["correct2"] = second.correct;
        }
      }
      if (!sample.is_null()) report.samples.push_back(sample);
    }
  }
  const double n = static_cast<double>(t1.size());
  const CorrectionCounts c = correction_metrics(t1, options.attempts > 1 ? t2 : t1);
  report.accuracy = c.accuracy_t1;
  report.no_answer_fraction = no_answer / n;
  if (options.attempts > 1) {
    report.accuracy_t2 = c.accuracy_t2;
    report.delta = c.delta;
    report.delta_i_to_c = c.delta_i_to_c;
    report.delta_c_to_i = c.delta_c_to_i;
    report.edit_distance = edit_sum / n;
    report.changed_fraction = changed / n;
  }
  return report;
}

std::vector<data::PromptRecord> load_eval_prompts(const Config& config) {
  std::vector<data::PromptRecord> prompts;
  if (config.data.eval.empty()) return prompts;
  data::DatasetOptions options;
  options.skip_malformed = config.data.skip_malformed;
  for (auto& p : data::load_prompt_dataset(config.data.eval, options).records) {
    if (p.answer) prompts.push_back(std::move(p));
  }
  if (config.data.eval_limit > 0 && static_cast<int64_t>(prompts.size()) > config.data.eval_limit) {
    prompts.resize(static_cast<size_t>(config.data.eval_limit));
  }
  return prompts;
}

double eval_accuracy(const Config& config, const Transformer& model, const ChatRenderer& renderer,
                     const std::vector<data::PromptRecord>& prompts) {
  EvalOptions options;
  options.max_new_tokens = config.generation.eval_max_new_tokens;
  options.decode_steps = config.generation.decode_steps;
  return evaluate_accuracy(model, renderer, prompts, options).accuracy;
}

void add_eval_metrics(const Config& config, const Transformer& model, const ChatRenderer& renderer,
                      const std::vector<data::PromptRecord>& prompts, std::map<std::string, double>& metrics) {
  if (prompts.empty()) return;
  metrics["eval_accuracy"] = eval_accuracy(config, model, renderer, prompts);
  if (config.train.eval_samples < 2) return;
  EvalOptions options;
  options.max_new_tokens = config.generation.eval_max_new_tokens;
  options.decode_steps = config.generation.decode_steps;
  options.samples = config.train.eval_samples;
  options.temperature = config.generation.temperature;
  options.top_p = config.generation.top_p;
  options.seed = config.seed;
  const EvalReport r = evaluate_accuracy(model, renderer, prompts, options);
  metrics["eval_mean_at_k"] = r.accuracy;
  metrics["eval_pass_at_k"] = r.pass_at_k;
  metrics["eval_maj_at_k"] = r.maj_at_k;
}

}  // namespace scorch
