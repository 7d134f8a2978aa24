// LoRA adapters (model/lora.h) against independent expectations: a zero lora_B leaves the model
// bitwise the base; the adapted forward and the A / B gradients match a float64 model whose
// weights are the merged W + s·B A (autograd through the merge, the separate-GEMM path); PEFT's
// init bounds; target names; the merge and the PEFT adapter directory round trip.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <limits>

#include "common/error.h"
#include "common/fs.h"
#include "config/config.h"
#include "model/hf_adapter.h"
#include "model/lora.h"
#include "model/safetensors.h"
#include "common/run_dir.h"
#include "model_test_util.h"
#include "train/loop.h"

using scorch::LoraSection;
using scorch::LoraWeights;
using scorch::Projection;
using scorch::Transformer;
using scorch::test::arange_positions;
using scorch::test::max_abs_diff;
using scorch::test::random_model;
using scorch::test::tiny_config;

namespace {

LoraSection lora_all(int64_t r = 4, double alpha = 8.0) {
  LoraSection l;
  l.enabled = true;
  l.r = r;
  l.lora_alpha = alpha;
  l.target_modules = {"all-linear"};
  return l;
}

// Gives every lora_B random values (a freshly initialised adapter has B = 0).
void randomise_b(Transformer& m, uint64_t seed) {
  at::manual_seed(seed);
  c10::NoGradGuard no_grad;
  for (auto& L : m.layers_)
    for (auto& w : L.lora)
      if (w.defined()) w.b.copy_(0.2 * at::randn(w.b.sizes()));
}

at::Tensor& weight_slot(scorch::TransformerLayer& L, int p) {
  at::Tensor* slots[] = {&L.q_weight, &L.k_weight, &L.v_weight, &L.o_weight, &L.gate_weight, &L.up_weight, &L.down_weight};
  return *slots[p];
}

// The float64 reference: the base in float64 with each adapted weight replaced by W + s·B A, where
// A and B are float64 leaves (returned, by PEFT name) so that autograd gives their gradients.
Transformer merged_float64(const Transformer& adapted, std::map<std::string, at::Tensor>* leaves) {
  Transformer ref = adapted.without_lora().clone();
  ref.to(at::kCPU, at::kDouble);
  ref.set_requires_grad(true);  // the plain ATen ops everywhere (kernels' fused ops are not float64)
  const double s = adapted.lora_scale().scaling;
  const auto names = adapted.lora_parameters();
  for (size_t i = 0; i < ref.layers_.size(); ++i) {
    for (int p = 0; p < scorch::kNumProjections; ++p) {
      const LoraWeights& w = adapted.layers_[i].lora[static_cast<size_t>(p)];
      if (!w.defined()) continue;
      const at::Tensor a = w.a.detach().to(at::kDouble).requires_grad_(true);
      const at::Tensor b = w.b.detach().to(at::kDouble).requires_grad_(true);
      const std::string stem = "base_model.model.model.layers." + std::to_string(i) + "." +
                               (p <= 3 ? "self_attn." : "mlp.") + scorch::projection_module_name(static_cast<Projection>(p));
      (*leaves)[stem + ".lora_A.weight"] = a;
      (*leaves)[stem + ".lora_B.weight"] = b;
      at::Tensor& slot = weight_slot(ref.layers_[i], p);
      slot = slot.detach() + s * b.matmul(a);  // no longer a slice of the fused storage: separate GEMMs
    }
  }
  EXPECT_EQ(leaves->size(), names.size());
  return ref;
}

const at::Tensor kIds = at::tensor(std::vector<int64_t>{5, 17, 3, 44, 8, 21, 0, 52, 1, 30, 30, 9, 2, 11}).view({2, 7});

double rel_err(const at::Tensor& a, const at::Tensor& ref) {
  return max_abs_diff(a, ref) / std::max(1e-30, ref.to(at::kDouble).abs().max().item<double>());
}

}  // namespace

TEST(Lora, ZeroLoraBLeavesTheForwardBitwiseTheBase) {
  Transformer m = random_model(tiny_config("qwen2"), 11);  // q/k/v biases, fused q/k/v and gate/up
  const Transformer base = m.clone();
  scorch::add_lora(m, lora_all(), 5);
  ASSERT_TRUE(m.has_lora());
  const at::Tensor pos = arange_positions(2, 7);
  {
    // Sampling, reference and evaluation forwards: the same kernels run, a zero term is added.
    c10::NoGradGuard no_grad;
    const at::Tensor h0 = base.forward(kIds, pos);
    EXPECT_TRUE(at::equal(m.forward(kIds, pos), h0));
    EXPECT_TRUE(at::equal(m.without_lora().forward(kIds, pos), h0));
  }
  // The training forward differentiates the adapter, so it runs the unfused norm / RoPE ops where
  // the frozen base alone runs kernels' fused ones: equal up to their summation order.
  const at::Tensor h = m.forward(kIds, pos);
  ASSERT_TRUE(h.requires_grad());
  c10::NoGradGuard no_grad;
  EXPECT_LT(max_abs_diff(h, base.forward(kIds, pos)), 1e-5);
}

TEST(Lora, InitFollowsPeftKaimingUniformOrGaussianWithZeroBAndIsSeeded) {
  Transformer m = random_model(tiny_config(), 1);
  LoraSection l = lora_all(8, 16);
  scorch::add_lora(m, l, 3);
  EXPECT_DOUBLE_EQ(m.lora_scale().scaling, 2.0);  // lora_alpha / r
  double lo = 0, hi = 0;
  for (const auto& L : m.layers_) {
    for (int p = 0; p < scorch::kNumProjections; ++p) {
      const LoraWeights& w = L.lora[static_cast<size_t>(p)];
      ASSERT_TRUE(w.defined());
      const int64_t in = weight_slot(const_cast<scorch::TransformerLayer&>(L), p).size(1);
      EXPECT_EQ(w.a.sizes(), (std::vector<int64_t>{8, in}));
      EXPECT_EQ(w.b.sizes(), (std::vector<int64_t>{weight_slot(const_cast<scorch::TransformerLayer&>(L), p).size(0), 8}));
      EXPECT_TRUE(w.b.eq(0).all().item<bool>());
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));  // kaiming_uniform_(a = sqrt(5))
      EXPECT_LE(w.a.abs().max().item<double>(), bound);
      lo = std::min(lo, w.a.min().item<double>() / bound);
      hi = std::max(hi, w.a.max().item<double>() / bound);
      EXPECT_TRUE(w.a.requires_grad() && w.b.requires_grad());
    }
  }
  EXPECT_LT(lo, -0.9);  // the draws fill the interval
  EXPECT_GT(hi, 0.9);
  for (const auto& [name, t] : m.named_parameters()) EXPECT_FALSE(t.requires_grad()) << name;  // base frozen

  Transformer again = random_model(tiny_config(), 1);
  scorch::add_lora(again, l, 3);
  EXPECT_TRUE(at::equal(again.layers_[1].lora[0].a, m.layers_[1].lora[0].a));

  l.init_lora_weights = "gaussian";
  l.use_rslora = true;
  scorch::add_lora(m, l, 3);
  EXPECT_DOUBLE_EQ(m.lora_scale().scaling, 16.0 / std::sqrt(8.0));
  at::Tensor all = at::cat({m.layers_[0].lora[4].a.flatten(), m.layers_[1].lora[4].a.flatten(),
                            m.layers_[0].lora[6].a.flatten(), m.layers_[1].lora[6].a.flatten()});
  EXPECT_NEAR(all.std().item<double>(), 1.0 / 8, 0.01);  // N(0, 1/r), 1536 draws
}

TEST(Lora, TargetModulesAreCheckedAgainstTheModelsModuleNames) {
  EXPECT_EQ(scorch::lora_targets({"all-linear"}).size(), 7u);
  EXPECT_EQ(scorch::lora_targets({"v_proj", "q_proj", "q_proj"}), (std::vector<Projection>{Projection::q, Projection::v}));
  try {
    scorch::lora_targets({"q_proj", "qkv_proj"});
    FAIL() << "expected a UserError";
  } catch (const scorch::UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("qkv_proj"), std::string::npos) << msg;
    for (const char* name : {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "all-linear"})
      EXPECT_NE(msg.find(name), std::string::npos) << msg;
  }
  EXPECT_THROW(scorch::lora_targets({}), scorch::UserError);
  EXPECT_THROW(scorch::lora_targets({"lm_head"}), scorch::UserError);
}

TEST(Lora, AdaptedForwardAndAdapterGradientsMatchAFloat64MergedModel) {
  for (const char* type : {"llama", "qwen2"}) {
    Transformer m = random_model(tiny_config(type), 21);
    LoraSection l = lora_all(4, 6);
    l.target_modules = {"q_proj", "v_proj", "o_proj", "up_proj", "down_proj"};  // fused blocks with and without adapters
    scorch::add_lora(m, l, 9);
    randomise_b(m, 4);
    std::map<std::string, at::Tensor> leaves;
    const Transformer ref = merged_float64(m, &leaves);

    const at::Tensor pos = arange_positions(2, 7);
    at::manual_seed(8);
    const at::Tensor weights = at::randn({2, 7, m.config().vocab_size}, at::kDouble);  // a loss with every logit in it
    const at::Tensor logits = m.logits(m.forward(kIds, pos));
    const at::Tensor ref_logits = ref.logits(ref.forward(kIds, pos));
    EXPECT_LT(rel_err(logits, ref_logits), 1e-5) << type;
    (logits.to(at::kDouble) * weights).sum().backward();
    (ref_logits * weights).sum().backward();
    for (const auto& [name, t] : m.lora_parameters()) {
      ASSERT_TRUE(t.grad().defined()) << name;
      const at::Tensor g_ref = leaves.at(name).grad();
      ASSERT_GT(g_ref.abs().max().item<double>(), 0.0) << name;  // not a test on zeros
      EXPECT_LT(rel_err(t.grad(), g_ref), 1e-4) << type << " " << name;
    }
    for (const auto& [name, t] : m.named_parameters()) EXPECT_FALSE(t.grad().defined()) << name;  // base frozen
  }
}

TEST(Lora, DecodeStepsOfTheAdaptedModelMatchItsForward) {
  Transformer m = random_model(tiny_config("qwen2"), 31);
  scorch::add_lora(m, lora_all(), 2);
  randomise_b(m, 6);
  c10::NoGradGuard no_grad;
  const at::Tensor ids = kIds.narrow(1, 0, 5);
  const at::Tensor full = m.forward(ids, arange_positions(2, 5));
  scorch::KvCache cache = scorch::KvCache::for_model(m.config(), 2, 8, m.dtype(), m.device());
  m.forward(ids.narrow(1, 0, 3), arange_positions(2, 3), std::nullopt, &cache);
  for (int64_t t = 3; t < 5; ++t) {
    const at::Tensor slot = at::tensor(std::vector<int64_t>{cache.used()});
    const at::Tensor h = m.decode_step(ids.narrow(1, t, 1).contiguous(), at::ones({2, 1}, at::kBool), slot, cache);
    cache.advance_static_step();
    EXPECT_LT(max_abs_diff(h.squeeze(1), full.select(1, t)), 1e-5) << t;
  }
  // And the adapter matters: the base gives something else.
  EXPECT_GT(max_abs_diff(m.without_lora().forward(ids, arange_positions(2, 5)), full), 1e-3);
}

TEST(Lora, MergeIsBasePlusScaledBAAndLeavesTheAdaptedModelUntouched) {
  Transformer m = random_model(tiny_config(), 41);
  LoraSection l = lora_all(4, 12);
  l.target_modules = {"k_proj", "gate_proj"};
  scorch::add_lora(m, l, 1);
  randomise_b(m, 2);
  const Transformer before = m.clone();
  const Transformer merged = scorch::merge_lora(m);
  EXPECT_FALSE(merged.has_lora());
  for (size_t i = 0; i < m.layers_.size(); ++i) {
    for (int p = 0; p < scorch::kNumProjections; ++p) {
      const at::Tensor w0 = weight_slot(m.layers_[i], p).to(at::kDouble);
      const at::Tensor wm = weight_slot(const_cast<Transformer&>(merged).layers_[i], p).to(at::kDouble);
      const LoraWeights& w = m.layers_[i].lora[static_cast<size_t>(p)];
      const at::Tensor expect = w.defined() ? w0 + 3.0 * w.b.detach().to(at::kDouble).matmul(w.a.detach().to(at::kDouble)) : w0;
      EXPECT_LT(max_abs_diff(wm, expect), 1e-6) << i << " " << p;
    }
  }
  for (const auto& [name, t] : before.named_parameters()) EXPECT_TRUE(at::equal(t, m.named_parameters().at(name))) << name;
  c10::NoGradGuard no_grad;
  const at::Tensor pos = arange_positions(2, 7);
  EXPECT_LT(rel_err(merged.forward(kIds, pos), m.forward(kIds, pos)), 1e-5);
}

TEST(Lora, PeftAdapterDirectoryRoundTripsWithPeftKeyNames) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("scorch-lora-" + std::to_string(::getpid()))).string();
  Transformer m = random_model(tiny_config("qwen2"), 51);
  LoraSection l = lora_all(2, 4);
  l.target_modules = {"q_proj", "down_proj"};
  scorch::add_lora(m, l, 1);
  randomise_b(m, 3);
  scorch::save_peft_adapter(m, l, dir, "/models/base");
  const auto header = scorch::safetensors::read_header(dir + "/adapter_model.safetensors");
  EXPECT_EQ(header.size(), 8u);  // 2 layers x 2 modules x (A, B)
  EXPECT_TRUE(header.count("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"));
  EXPECT_TRUE(header.count("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"));
  EXPECT_EQ(header.at("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight").shape, (std::vector<int64_t>{32, 2}));
  const auto cfg = nlohmann::json::parse(scorch::fs::read_file(dir + "/adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 2);
  EXPECT_EQ(cfg["lora_alpha"], 4.0);
  EXPECT_EQ(cfg["target_modules"], nlohmann::json({"q_proj", "down_proj"}));
  EXPECT_EQ(cfg["base_model_name_or_path"], "/models/base");

  Transformer loaded = m.without_lora().clone();
  scorch::load_peft_adapter(loaded, dir);
  c10::NoGradGuard no_grad;
  const at::Tensor pos = arange_positions(2, 7);
  EXPECT_TRUE(at::equal(loaded.forward(kIds, pos), m.forward(kIds, pos)));
  EXPECT_EQ(scorch::adapter_checksum(loaded), scorch::adapter_checksum(m));
  m.layers_[0].lora[0].b[0][0].add_(1e-3);
  EXPECT_NE(scorch::adapter_checksum(loaded), scorch::adapter_checksum(m));

  // A PEFT option scorch does not implement is refused, not ignored.
  auto bad = cfg;
  bad["use_dora"] = true;
  scorch::fs::atomic_write(dir + "/adapter_config.json", bad.dump());
  EXPECT_THROW(scorch::load_peft_adapter(loaded, dir), scorch::UserError);
  scorch::fs::remove_all(dir);
}

namespace {

// Next-token cross-entropy on fixed random sequences: the smallest TrainTask (train/loop.h).
class TinyLmTask : public scorch::TrainTask {
 public:
  TinyLmTask(const Transformer& model, int64_t steps) : model_(model), steps_(steps) {
    at::manual_seed(77);
    ids_ = at::randint(model.config().vocab_size, {2, 9}, at::kLong);
  }
  int64_t total_steps() const override { return steps_; }
  std::vector<int64_t> prepare_step(int64_t, scorch::StepMetrics&) override { return {2 * 8}; }
  double forward_backward(size_t, double denominator, scorch::StepMetrics&) override {
    const at::Tensor logits = model_.logits(model_.forward(ids_.narrow(1, 0, 8), arange_positions(2, 8)));
    const at::Tensor loss = at::cross_entropy_loss(logits.reshape({16, -1}), ids_.narrow(1, 1, 8).reshape({16}),
                                                   {}, at::Reduction::Sum);
    (loss / denominator).backward();
    return loss.item<double>();
  }
  nlohmann::json data_cursor() const override { return nlohmann::json::object(); }
  void restore_data_cursor(const nlohmann::json&) override {}

 private:
  const Transformer& model_;
  int64_t steps_;
  at::Tensor ids_;
};

}  // namespace

TEST(Lora, TrainingUpdatesOnlyTheAdapterAndKeepsTheBaseBytes) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("scorch-lora-train-" + std::to_string(::getpid()))).string();
  scorch::Config config;
  config.lora = lora_all(4, 8);
  config.lora.lora_dropout = 0.1;  // the dropout path trains too
  config.optim.learning_rate = 1e-2;
  config.optim.weight_decay = 0.1;  // decoupled decay would move a base weight that reached the optimizer
  config.optim.decay_norms_and_biases = true;
  config.train.max_steps = 3;
  config.model.path = "/models/base";
  config.log.progress = false;
  Transformer m = random_model(tiny_config("qwen2"), 61);
  scorch::add_lora(m, config.lora, config.seed);
  const Transformer before = m.clone();
  TinyLmTask task(m, 3);
  scorch::fs::make_directories(dir);
  scorch::run_training(config, scorch::RunDir{dir, false}, m, task, scorch::LoopOptions{});

  for (const auto& [name, t] : before.named_parameters()) {
    const at::Tensor now = m.named_parameters().at(name);
    EXPECT_EQ(std::memcmp(now.data_ptr(), t.data_ptr(), t.numel() * t.element_size()), 0) << name << " changed";
  }
  const auto adapter = m.lora_parameters(), adapter_before = before.lora_parameters();
  for (const auto& [name, t] : adapter) {
    if (name.find("lora_B") != std::string::npos) EXPECT_GT(t.abs().max().item<double>(), 0.0) << name;
    EXPECT_FALSE(at::equal(t, adapter_before.at(name))) << name << " was not trained";
  }
  // The checkpoint holds the adapter and its optimizer state only; the export is a PEFT adapter.
  const std::string ckpt = dir + "/checkpoints/step-000003/";
  const auto model_header = scorch::safetensors::read_header(ckpt + "model.safetensors");
  EXPECT_EQ(model_header.size(), adapter.size());
  for (const auto& [name, info] : model_header) EXPECT_TRUE(adapter.count(name)) << name;
  const auto optimizer_header = scorch::safetensors::read_header(ckpt + "optimizer.safetensors");
  EXPECT_EQ(optimizer_header.size(), 2 * adapter.size());  // exp_avg, exp_avg_sq (fp32: no master copies)
  for (const auto& [name, info] : optimizer_header) EXPECT_NE(name.find(".lora_"), std::string::npos) << name;
  EXPECT_TRUE(scorch::fs::exists(dir + "/export/adapter_model.safetensors"));
  EXPECT_TRUE(scorch::fs::exists(dir + "/export/adapter_config.json"));
  EXPECT_FALSE(scorch::fs::exists(dir + "/export/model.safetensors"));
  scorch::fs::remove_all(dir);
}

// An adapter export is staged like a model export: NaN adapter weights are refused and the adapter
// already in the directory stays byte-identical.
TEST(Lora, NonFiniteAdapterIsNeverExportedAndTheOldAdapterSurvives) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("scorch-lora-nan-" + std::to_string(::getpid()))).string();
  Transformer m = random_model(tiny_config("llama"), 52);
  const LoraSection l = lora_all(2, 4);
  scorch::add_lora(m, l, 1);
  randomise_b(m, 4);
  scorch::save_peft_adapter(m, l, dir, "/models/base");
  const std::string before = scorch::fs::read_file(dir + "/adapter_model.safetensors");
  at::Tensor b = m.lora_parameters().begin()->second;
  {
    c10::NoGradGuard no_grad;
    b.view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  }
  EXPECT_THROW(scorch::save_peft_adapter(m, l, dir, "/models/base"), scorch::UserError);
  EXPECT_EQ(scorch::fs::read_file(dir + "/adapter_model.safetensors"), before);
}
