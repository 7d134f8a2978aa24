// config/: strict YAML binding, defaults, --set overrides, and the resolved-config round trip.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "common/error.h"
#include "config/config.h"
#include "config/yaml_binder.h"

using namespace scorch;

namespace {
const char* kMinimal = "trainer: sft\nmodel:\n  path: models/tiny\ndata:\n  train: data/train.jsonl\n";

std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(yaml, "job.yaml", overrides);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Config, MinimalConfigGetsDocumentedDefaults) {
  Config c = parse_config(kMinimal, "job.yaml");
  EXPECT_EQ(c.trainer, "sft");
  EXPECT_EQ(c.model.path, "models/tiny");
  EXPECT_EQ(c.seed, 42u);
  EXPECT_TRUE(c.model.fused_training_ops);
  EXPECT_FALSE(c.model.gradient_checkpointing);
  EXPECT_DOUBLE_EQ(c.optim.learning_rate, 1e-5);
  EXPECT_EQ(c.grpo.num_generations, 8);
  EXPECT_EQ(c.grpo.loss_type, GrpoLossType::kDapo);
  EXPECT_DOUBLE_EQ(c.grpo.epsilon, 0.2);
  EXPECT_DOUBLE_EQ(c.dpo.beta, 0.1);
  EXPECT_DOUBLE_EQ(c.score.alpha, 10.0);
  EXPECT_DOUBLE_EQ(c.scpo.beta, 0.5);
  EXPECT_TRUE(c.rewards.empty());
}

TEST(Config, ResolvedYamlRoundTripsExactly) {
  const std::string yaml = std::string(kMinimal) +
                           "seed: 7\noptim:\n  learning_rate: 3.0e-6\n  lr_scheduler_type: cosine\n"
                           "generation:\n  stop: [\"\\n\\n\", '</s>']\n  temperature: 0.7\n"
                           "dpo:\n  loss_weights: [0.25]\n"
                           "rewards:\n  - name: math_answer\n    weight: 2\n    params: {boxed: true, tol: 0.001}\n"
                           "  - name: format\n";
  Config a = parse_config(yaml, "job.yaml");
  const std::string text = to_yaml(a);
  Config b = parse_config(text, "resolved.yaml");
  EXPECT_EQ(to_yaml(b), text);
  EXPECT_EQ(b.seed, 7u);
  EXPECT_DOUBLE_EQ(b.optim.learning_rate, 3e-6);
  EXPECT_EQ(b.generation.stop, (std::vector<std::string>{"\n\n", "</s>"}));
  ASSERT_EQ(b.rewards.size(), 2u);
  EXPECT_EQ(b.rewards[0].name, "math_answer");
  EXPECT_DOUBLE_EQ(b.rewards[0].weight, 2.0);
  EXPECT_TRUE(b.rewards[0].params->node["boxed"].as<bool>());
  EXPECT_DOUBLE_EQ(b.rewards[1].weight, 1.0);
}

TEST(Config, EveryKeyAppearsInTheResolvedYaml) {
  const std::string text = to_yaml(parse_config(kMinimal, "job.yaml"));
  for (const auto& key : config_keys()) {
    const std::string leaf = key.substr(key.rfind('.') + 1);
    EXPECT_NE(text.find(leaf + ":"), std::string::npos) << key;
  }
  EXPECT_GT(config_keys().size(), 80u);
}

// No key may be accepted and then ignored: each key's field (the key's last component, the member
// name in config.h) must be read somewhere outside csrc/config as `.name` or `->name` (not a call
// such as `.precision(4)`). A key no code reads fails here. Member names shared by several sections
// (`beta`, `path`) pass if any is read: this catches a key nothing reads, not every wiring mistake.
TEST(Config, EveryKeyIsReadByCodeOutsideTheConfigLayer) {
  namespace fs = std::filesystem;
  std::string sources;
  for (const char* dir : {"csrc", "trainers", "rewards", "kernels", "cli"}) {
    for (const auto& e : fs::recursive_directory_iterator(std::string(SCORCH_SOURCE_DIR) + "/" + dir)) {
      const std::string p = e.path().string();
      if (!e.is_regular_file() || p.find("/csrc/config/") != std::string::npos) continue;
      const std::string ext = e.path().extension().string();
      if (ext != ".cpp" && ext != ".h" && ext != ".cu") continue;
      std::ifstream in(p);
      sources.append(std::istreambuf_iterator<char>(in), {});
      sources += '\n';
    }
  }
  ASSERT_GT(sources.size(), 100000u);
  for (const auto& key : config_keys()) {
    const std::string leaf = key.substr(key.rfind('.') + 1);
    bool read = false;
    for (size_t at = sources.find(leaf); !read && at != std::string::npos; at = sources.find(leaf, at + 1)) {
      const bool member = at >= 1 && (sources[at - 1] == '.' || (at >= 2 && sources.compare(at - 2, 2, "->") == 0));
      size_t end = at + leaf.size();
      if (!member || (end < sources.size() && (std::isalnum(static_cast<unsigned char>(sources[end])) || sources[end] == '_'))) {
        continue;
      }
      while (end < sources.size() && std::isspace(static_cast<unsigned char>(sources[end]))) ++end;
      read = end >= sources.size() || sources[end] != '(';
    }
    EXPECT_TRUE(read) << "config key `" << key << "` is accepted but no code reads `." << leaf << "`";
  }
}

TEST(Config, SetOverridesApplyWithTheSameChecks) {
  Config c = parse_config(kMinimal, "job.yaml",
                          {"optim.learning_rate=2e-4", "grpo.num_generations=4", "generation.stop=[a, b]", "log.level=debug"});
  EXPECT_DOUBLE_EQ(c.optim.learning_rate, 2e-4);
  EXPECT_EQ(c.grpo.num_generations, 4);
  EXPECT_EQ(c.generation.stop.size(), 2u);
  EXPECT_EQ(c.log.level, "debug");
  const std::string e = error_of(kMinimal, {"optim.learning_rate=abc"});
  EXPECT_NE(e.find("(from --set optim.learning_rate)"), std::string::npos) << e;
  EXPECT_NE(e.find("must be a finite number"), std::string::npos) << e;
  const std::string u = error_of(kMinimal, {"optim.learnin_rate=1e-3"});
  EXPECT_NE(u.find("did you mean `optim.learning_rate`"), std::string::npos) << u;
  EXPECT_NE(error_of(kMinimal, {"no_equals_sign"}).find("expected key.path=value"), std::string::npos);
}

TEST(Config, ErrorsNameKeyLineAndFix) {
  std::string e = error_of(std::string(kMinimal) + "train:\n  micro_batch_size: 0\n");
  EXPECT_NE(e.find("job.yaml:7"), std::string::npos) << e;
  EXPECT_NE(e.find("`train.micro_batch_size` must be in [1, 65536], got 0"), std::string::npos) << e;
  e = error_of(std::string(kMinimal) + "grpo:\n  loss_type: dapoo\n");
  EXPECT_NE(e.find("did you mean `dapo`"), std::string::npos) << e;
  e = error_of(std::string(kMinimal) + "optimizer:\n  learning_rate: 1e-5\n");
  EXPECT_NE(e.find("unknown key `optimizer`"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean `optim`"), std::string::npos) << e;
  e = error_of("model:\n  path: m\ndata:\n  train: t\n");
  EXPECT_NE(e.find("missing required key `trainer`"), std::string::npos) << e;
}

TEST(Config, EvalSamplesNeedsTwoOrMoreSamplesAndATemperature) {
  EXPECT_EQ(parse_config(std::string(kMinimal) + "train:\n  eval_samples: 8\n", "j").train.eval_samples, 8);
  std::string e = error_of(std::string(kMinimal) + "train:\n  eval_samples: 1\n");
  EXPECT_NE(e.find("`train.eval_samples` 1 is greedy evaluation already"), std::string::npos) << e;
  e = error_of(std::string(kMinimal) + "train:\n  eval_samples: 4\ngeneration:\n  temperature: 0\n");
  EXPECT_NE(e.find("sampled evaluation needs `generation.temperature` > 0"), std::string::npos) << e;
  e = error_of(std::string(kMinimal) + "train:\n  eval_samples: -2\n");
  EXPECT_NE(e.find("train.eval_samples"), std::string::npos) << e;
}

TEST(Config, ScpoPairsIsVoteOrGoldAndGoldRefusesVoteThresholds) {
  const std::string scpo = std::string(kMinimal) + "scpo:\n  pairs: ";  // `pairs` is line 7
  EXPECT_EQ(parse_config(kMinimal, "j").scpo.pairs, ScpoPairs::kVote);
  const Config gold = parse_config(scpo + "gold\n", "job.yaml");
  EXPECT_EQ(gold.scpo.pairs, ScpoPairs::kGold);
  // The resolved config writes every key (the thresholds at their defaults) and parses back.
  EXPECT_EQ(to_yaml(parse_config(to_yaml(gold), "resolved.yaml")), to_yaml(gold));
  std::string e = error_of(scpo + "majority\n");
  EXPECT_NE(e.find("job.yaml:7"), std::string::npos) << e;
  EXPECT_NE(e.find("`scpo.pairs` must be one of"), std::string::npos) << e;
  e = error_of(scpo + "gold\n  threshold: 0.6\n");
  EXPECT_NE(e.find("job.yaml:8: `scpo.threshold` is the vote threshold and `scpo.pairs: gold` has no vote"), std::string::npos) << e;
  e = error_of(scpo + "gold\n  rounds: 2\n  round_thresholds: [0.5, 0.625]\n");
  EXPECT_NE(e.find("job.yaml:9: `scpo.round_thresholds` are vote thresholds"), std::string::npos) << e;
  e = error_of(scpo + "gold\n", {"scpo.threshold=0.75"});
  EXPECT_NE(e.find("(from --set scpo.threshold)"), std::string::npos) << e;
  // With the vote, the thresholds are the vote's.
  EXPECT_DOUBLE_EQ(parse_config(scpo + "vote\n  threshold: 0.6\n", "j").scpo.threshold, 0.6);
}

TEST(Config, BooleansAndIntegersAreStrict) {
  EXPECT_TRUE(parse_config("trainer: sft\nmodel: {path: m}\ndata:\n  packing: true\n  train: x\n", "j").data.packing);
  EXPECT_NE(error_of(std::string(kMinimal) + "log:\n  progress: maybe\n").find("must be true or false"), std::string::npos);
  EXPECT_NE(error_of(std::string(kMinimal) + "train:\n  epochs: 1.5\n").find("must be an integer"), std::string::npos);
  EXPECT_EQ(parse_config(std::string(kMinimal) + "train:\n  max_steps: 1e3\n", "j").train.max_steps, 1000);
}

TEST(Config, LoraSectionHasPeftNamesAndDefaultsAndRefusesWhatIsNotImplemented) {
  const Config d = parse_config(kMinimal, "job.yaml");
  EXPECT_FALSE(d.lora.enabled);
  EXPECT_EQ(d.lora.r, 8);  // PEFT's LoraConfig defaults
  EXPECT_DOUBLE_EQ(d.lora.lora_alpha, 8.0);
  EXPECT_DOUBLE_EQ(d.lora.lora_dropout, 0.0);
  EXPECT_EQ(d.lora.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_FALSE(d.lora.use_rslora);
  EXPECT_EQ(d.lora.init_lora_weights, "kaiming");
  const Config c = parse_config(std::string(kMinimal) + "lora: {enabled: true, r: 16, lora_alpha: 32, target_modules: all-linear}\n",
                                "job.yaml", {"lora.init_lora_weights=gaussian"});
  EXPECT_TRUE(c.lora.enabled);
  EXPECT_EQ(c.lora.r, 16);
  EXPECT_EQ(c.lora.target_modules, (std::vector<std::string>{"all-linear"}));
  EXPECT_EQ(c.lora.init_lora_weights, "gaussian");
  EXPECT_EQ(parse_config(to_yaml(c), "resolved.yaml").lora.target_modules, c.lora.target_modules);
  std::string e = error_of(std::string(kMinimal) + "lora:\n  init_lora_weights: pissa\n");
  EXPECT_NE(e.find("`lora.init_lora_weights` must be one of"), std::string::npos) << e;
  e = error_of(std::string(kMinimal) + "lora:\n  alpha: 16\n");
  EXPECT_NE(e.find("did you mean `lora.lora_alpha`"), std::string::npos) << e;
  EXPECT_NE(error_of(std::string(kMinimal) + "lora:\n  use_dora: true\n").find("unknown key"), std::string::npos);
  EXPECT_NE(error_of(std::string(kMinimal) + "lora:\n  r: 0\n").find("`lora.r` must be >= 1"), std::string::npos);
}

TEST(Config, DuplicateKeysAreErrorsNamingBothLines) {
  std::string e = error_of(std::string(kMinimal) + "optim:\n  learning_rate: 1.0e-4\n  learning_rate: 2.0e-4\n");
  EXPECT_NE(e.find("job.yaml:8"), std::string::npos) << e;
  EXPECT_NE(e.find("duplicate key `optim.learning_rate`"), std::string::npos) << e;
  EXPECT_NE(e.find("first at line 7"), std::string::npos) << e;
  // A whole section twice, and a key twice inside a reward's params.
  e = error_of(std::string(kMinimal) + "log: {every: 2}\nseed: 1\nlog: {every: 3}\n");
  EXPECT_NE(e.find("duplicate key `log`"), std::string::npos) << e;
  EXPECT_NE(e.find("job.yaml:8"), std::string::npos) << e;
  e = error_of(std::string(kMinimal) + "rewards:\n  - name: math_answer\n    params: {tol: 0.1, tol: 0.2}\n");
  EXPECT_NE(e.find("duplicate key `rewards[0].params.tol`"), std::string::npos) << e;
}

TEST(Config, AScalarIsNotCoercedToAList) {
  const std::string e = error_of(std::string(kMinimal) + "generation:\n  stop: \"x\"\n");
  EXPECT_NE(e.find("`generation.stop` must be a list of strings"), std::string::npos) << e;
  EXPECT_NE(e.find("[x]"), std::string::npos) << e;
  EXPECT_NE(error_of(kMinimal, {"generation.stop=x"}).find("must be a list"), std::string::npos);
  EXPECT_EQ(parse_config(kMinimal, "job.yaml", {"generation.stop=[x]"}).generation.stop, std::vector<std::string>{"x"});
}

TEST(Config, HugeBadValuesAreShortenedInMessages) {
  const std::string huge(2'000'000, '9');
  const std::string e = error_of(std::string(kMinimal) + "optim:\n  learning_rate: x" + huge + "\n");
  EXPECT_NE(e.find("`optim.learning_rate` must be a finite number"), std::string::npos) << e.substr(0, 300);
  EXPECT_NE(e.find("(2000001 bytes)"), std::string::npos) << e.substr(0, 300);
  EXPECT_LT(e.size(), 400u);
}

TEST(Config, ChatTemplateKwargsAreAJsonObjectThatRoundTrips) {
  const Config c = parse_config(std::string(kMinimal) + "tokenizer:\n  chat_template_kwargs: {enable_thinking: false, depth: 2, name: x}\n",
                                "job.yaml");
  EXPECT_EQ(c.tokenizer.chat_template_kwargs, R"({"enable_thinking":false,"depth":2,"name":"x"})");
  const std::string text = to_yaml(c);
  EXPECT_NE(text.find("enable_thinking: false"), std::string::npos) << text;
  EXPECT_EQ(to_yaml(parse_config(text, "resolved.yaml")), text);
  EXPECT_EQ(parse_config(kMinimal, "job.yaml").tokenizer.chat_template_kwargs, "{}");
  EXPECT_NE(error_of(std::string(kMinimal) + "tokenizer:\n  chat_template_kwargs: [a]\n").find("must be a mapping"), std::string::npos);
}
