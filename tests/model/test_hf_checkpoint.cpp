// HF directories: export -> load is bit-identical (single file and shards, fp32 and bf16), mismatched
// weights are one UserError listing them, and `scorch init-model` / `scorch export` exit 2 on bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "common/error.h"
#include "common/fs.h"
#include "model/hf_checkpoint.h"
#include "model_test_util.h"
#include "tests/support/run_cli.h"

using scorch::Transformer;
using scorch::test::random_model;
using scorch::test::run_scorch;
using scorch::test::temp_dir;
using scorch::test::tiny_config;
namespace stdfs = std::filesystem;

namespace {

void expect_identical(const Transformer& a, const Transformer& b) {
  const auto na = a.named_parameters(), nb = b.named_parameters();
  ASSERT_EQ(na.size(), nb.size());
  for (const auto& [name, t] : na) {
    ASSERT_TRUE(nb.count(name)) << name;
    EXPECT_EQ(nb.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(at::equal(nb.at(name), t)) << name;
  }
}

std::string expect_user_error_loading(const std::string& dir) {
  try {
    scorch::load_hf_model(dir);
  } catch (const scorch::UserError& e) {
    return e.what();
  }
  ADD_FAILURE() << "loading " << dir << " should fail";
  return "";
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST(HfCheckpoint, ExportThenLoadIsBitIdentical) {
  for (bool tied : {false, true}) {
    for (auto dtype : {at::kFloat, at::kBFloat16}) {
      const Transformer m = random_model(tiny_config(tied ? "qwen2" : "llama", tied), 21, dtype);
      const std::string dir = temp_dir("hf");
      scorch::export_hf_model(m, dir);
      for (const char* f : {"config.json", "model.safetensors", "generation_config.json"}) {
        EXPECT_TRUE(scorch::fs::exists(dir + "/" + f)) << f;
      }
      const Transformer back = scorch::load_hf_model(dir);
      expect_identical(m, back);
      for (const auto& L : back.layers_) {  // loading ends fused: no-grad forwards run the fused GEMMs
        EXPECT_TRUE(scorch::has_fused_qkv(L));
        EXPECT_TRUE(scorch::has_fused_gate_up(L));
      }
      EXPECT_EQ(back.config().dtype, scorch::model_dtype_name(dtype));
      EXPECT_EQ(back.config().tie_word_embeddings, tied);
      // Export of the loaded model reproduces the weights file byte for byte.
      const std::string again = temp_dir("hf");
      scorch::export_hf_model(back, again);
      EXPECT_EQ(scorch::fs::read_file(dir + "/model.safetensors"), scorch::fs::read_file(again + "/model.safetensors"));
    }
  }
}

TEST(HfCheckpoint, ShardsAboveTheThresholdLoadBackAndReexportCleansUp) {
  const Transformer m = random_model(tiny_config("llama"), 22);
  const std::string dir = temp_dir("hf");
  scorch::ExportOptions opt;
  opt.max_shard_bytes = 20000;
  scorch::export_hf_model(m, dir, opt);
  EXPECT_FALSE(scorch::fs::exists(dir + "/model.safetensors"));
  EXPECT_TRUE(scorch::fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_TRUE(scorch::fs::exists(dir + "/model-00001-of-00003.safetensors") ||
              scorch::fs::exists(dir + "/model-00001-of-00002.safetensors") ||
              scorch::fs::exists(dir + "/model-00001-of-00004.safetensors"));
  for (const auto& e : stdfs::directory_iterator(dir)) {
    if (e.path().extension() == ".safetensors") EXPECT_LE(e.file_size(), 20000u + 4096u) << e.path();
  }
  expect_identical(m, scorch::load_hf_model(dir));
  scorch::export_hf_model(m, dir);  // single file now: stale shards and index must go
  int shards = 0;
  for (const auto& e : stdfs::directory_iterator(dir)) shards += e.path().filename().string().rfind("model-", 0) == 0;
  EXPECT_EQ(shards, 0);
  EXPECT_FALSE(scorch::fs::exists(dir + "/model.safetensors.index.json"));
  expect_identical(m, scorch::load_hf_model(dir));
}

TEST(HfCheckpoint, MissingUnexpectedAndMisshapedTensorsAreListed) {
  const Transformer m = random_model(tiny_config("llama"), 23);
  const std::string dir = temp_dir("hf");
  scorch::export_hf_model(m, dir);
  auto tensors = scorch::safetensors::load(dir + "/model.safetensors");
  tensors.erase("model.layers.1.mlp.up_proj.weight");
  tensors["model.layers.0.self_attn.q_proj.bias"] = at::zeros({32});
  tensors["model.norm.weight"] = at::ones({31});
  scorch::safetensors::save(dir + "/model.safetensors", tensors);
  const std::string msg = expect_user_error_loading(dir);
  EXPECT_NE(msg.find("missing: model.layers.1.mlp.up_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected: model.layers.0.self_attn.q_proj.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("wrong shape: model.norm.weight [31] (config needs [32])"), std::string::npos) << msg;
}

TEST(HfCheckpoint, MissingConfigWeightsOrBadIndexAreUserErrors) {
  const std::string empty = temp_dir("hf");
  EXPECT_NE(expect_user_error_loading(empty).find("config.json"), std::string::npos);
  EXPECT_NE(expect_user_error_loading(empty + "/nope").find("does not exist"), std::string::npos);
  const Transformer m = random_model(tiny_config("llama"), 24);
  const std::string dir = temp_dir("hf");
  scorch::export_hf_model(m, dir);
  stdfs::remove(dir + "/model.safetensors");
  EXPECT_NE(expect_user_error_loading(dir).find("no weights"), std::string::npos);
  write_text(dir + "/model.safetensors.index.json", R"({"weight_map": {"model.norm.weight": "../../etc/passwd"}})");
  EXPECT_NE(expect_user_error_loading(dir).find("plain file name"), std::string::npos);
  write_text(dir + "/model.safetensors.index.json", "{oops");
  EXPECT_NE(expect_user_error_loading(dir).find("not valid JSON"), std::string::npos);
}

TEST(HfCheckpoint, TokenizerAndGenerationConfigFilesAreCopied) {
  const std::string src = temp_dir("tok");
  write_text(src + "/tokenizer.model", "spm-bytes");
  write_text(src + "/tokenizer_config.json", "{\"x\": 1}");
  write_text(src + "/generation_config.json", "{\"temperature\": 0.6}");
  const Transformer m = random_model(tiny_config("llama"), 25);
  const std::string out = temp_dir("hf");
  scorch::ExportOptions opt;
  opt.tokenizer_source = src;
  opt.generation_config_source = src;
  scorch::export_hf_model(m, out, opt);
  EXPECT_EQ(scorch::fs::read_file(out + "/tokenizer.model"), "spm-bytes");
  EXPECT_EQ(scorch::fs::read_file(out + "/tokenizer_config.json"), "{\"x\": 1}");
  EXPECT_EQ(scorch::fs::read_file(out + "/generation_config.json"), "{\"temperature\": 0.6}");
  EXPECT_FALSE(scorch::fs::exists(out + "/tokenizer.json"));
  const std::string generated = temp_dir("hf");
  scorch::export_hf_model(m, generated);
  const auto gen = nlohmann::json::parse(scorch::fs::read_file(generated + "/generation_config.json"));
  EXPECT_EQ(gen["bos_token_id"], 1);
  EXPECT_EQ(gen["eos_token_id"], 2);
}

TEST(ModelCli, InitModelThenExportRoundTrips) {
  const std::string dir = temp_dir("cli");
  write_text(dir + "/config.json", scorch::model_config_to_json(tiny_config("qwen2")).dump());
  write_text(dir + "/tokenizer.model", "spm");
  auto r = run_scorch("init-model --config " + dir + "/config.json --out " + dir + "/m --seed 3 --tokenizer " +
                      dir + "/tokenizer.model --dtype bfloat16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Transformer m = scorch::load_hf_model(dir + "/m");
  EXPECT_EQ(m.dtype(), at::kBFloat16);
  EXPECT_EQ(scorch::fs::read_file(dir + "/m/tokenizer.model"), "spm");
  const double std = m.layers_[0].gate_weight.to(at::kFloat).std().item<double>();
  EXPECT_NEAR(std, 0.02, 0.004);  // initializer_range default
  r = run_scorch("init-model --config " + dir + "/config.json --out " + dir + "/m2 --seed 3 --dtype bfloat16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(scorch::fs::read_file(dir + "/m/model.safetensors"), scorch::fs::read_file(dir + "/m2/model.safetensors"));
  r = run_scorch("export --model " + dir + "/m --out " + dir + "/e --max-shard-bytes 30000");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_identical(m, scorch::load_hf_model(dir + "/e"));
  EXPECT_EQ(scorch::fs::read_file(dir + "/e/tokenizer.model"), "spm");  // taken from the model directory
}

TEST(ModelCli, BadInputExitsWithCode2) {
  const std::string dir = temp_dir("cli");
  write_text(dir + "/gpt2.json", R"({"model_type": "gpt2", "vocab_size": 10})");
  write_text(dir + "/partial.json", R"({"model_type": "llama", "vocab_size": 10})");
  write_text(dir + "/ok.json", scorch::model_config_to_json(tiny_config("llama")).dump());
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"init-model --config " + dir + "/missing.json --out " + dir + "/o", "missing.json"},
      {"init-model --config " + dir + "/gpt2.json --out " + dir + "/o", "'gpt2' is not supported"},
      {"init-model --config " + dir + "/partial.json --out " + dir + "/o", "`hidden_size` is missing"},
      {"init-model --config " + dir + "/ok.json --out " + dir + "/o --dtype int8", "'int8' is not supported"},
      {"init-model --config " + dir + "/ok.json", "--out"},
      {"export --model " + dir + "/nothing --out " + dir + "/o", "does not exist"},
      {"export --model " + dir + " --out " + dir + "/o", "config.json"},
  };
  for (const auto& c : cases) {
    const auto r = run_scorch(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("Exception raised from"), std::string::npos) << r.output;
  }
  // A corrupt weights file in an otherwise valid model directory.
  ASSERT_EQ(run_scorch("init-model --config " + dir + "/ok.json --out " + dir + "/m").exit_code, 0);
  const std::string bytes = scorch::fs::read_file(dir + "/m/model.safetensors");
  std::ofstream(dir + "/m/model.safetensors", std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);
  const auto r = run_scorch("export --model " + dir + "/m --out " + dir + "/o");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("corrupt safetensors file"), std::string::npos) << r.output;
}

// A failing command leaves what exists intact; replacing a non-empty directory needs --force.
TEST(ModelCli, FailingOrUnforcedWritesLeaveExistingDirectoriesIntact) {
  const std::string dir = temp_dir("cli");
  write_text(dir + "/ok.json", scorch::model_config_to_json(tiny_config("llama")).dump());
  ASSERT_EQ(run_scorch("init-model --config " + dir + "/ok.json --out " + dir + "/trained --seed 1").exit_code, 0);
  ASSERT_EQ(run_scorch("init-model --config " + dir + "/ok.json --out " + dir + "/e --seed 2").exit_code, 0);
  const std::string trained = scorch::fs::read_file(dir + "/trained/model.safetensors");
  const std::string exported = scorch::fs::read_file(dir + "/e/model.safetensors");
  ASSERT_NE(trained, exported);

  auto r = run_scorch("init-model --config " + dir + "/ok.json --out " + dir + "/trained --seed 9");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
  r = run_scorch("export --model " + dir + "/trained --out " + dir + "/e --force --tokenizer " + dir + "/missing");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("missing"), std::string::npos) << r.output;
  r = run_scorch("export --model " + dir + "/trained --out " + dir + "/e");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(scorch::fs::read_file(dir + "/trained/model.safetensors"), trained);
  EXPECT_EQ(scorch::fs::read_file(dir + "/e/model.safetensors"), exported);

  // --force replaces the directory whole (a stray file of the old one does not survive).
  write_text(dir + "/e/stray.txt", "old");
  r = run_scorch("export --model " + dir + "/trained --out " + dir + "/e --force");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(scorch::fs::read_file(dir + "/e/model.safetensors"), trained);
  EXPECT_FALSE(scorch::fs::exists(dir + "/e/stray.txt"));
  for (const auto& entry : stdfs::directory_iterator(dir)) {  // no staging directory left behind
    EXPECT_EQ(entry.path().filename().string().find(".staging."), std::string::npos) << entry.path();
  }
}

TEST(HfCheckpoint, NonFiniteWeightsAreNeverExported) {
  Transformer m = random_model(tiny_config("llama"), 4, at::kFloat);
  const std::string dir = temp_dir("hf");
  scorch::export_hf_model(m, dir);
  const std::string before = scorch::fs::read_file(dir + "/model.safetensors");
  m.layers_[1].down_weight.view(-1)[3] = std::numeric_limits<float>::quiet_NaN();
  try {
    scorch::export_hf_model(m, dir);
    ADD_FAILURE() << "exporting NaN weights should fail";
  } catch (const scorch::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("down_proj"), std::string::npos) << e.what();
  }
  EXPECT_EQ(scorch::fs::read_file(dir + "/model.safetensors"), before);
}
