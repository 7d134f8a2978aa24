// CheckpointManager: bitwise round trip of the full TrainState, crash safety of save() at every
// stage, `latest`, keep-last-K pruning, leftovers of crashes, and clear errors for corrupt
// checkpoints and a resumed model of a different shape.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/fs.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"

namespace scorch {
namespace {
namespace stdfs = std::filesystem;

void remove_tree(const std::string& path) { scorch::fs::remove_all(path); }  // never std::filesystem's (common/fs.h)

class Checkpoints : public ::testing::Test {
 protected:
  void SetUp() override {
    run_dir_ = (stdfs::temp_directory_path() /
                ("scorch_ckpt_" + std::to_string(::getpid()) + "_" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                   .string();
    remove_tree(run_dir_);
    stdfs::create_directories(run_dir_);
  }
  void TearDown() override {
    CheckpointManager::set_fail_point_for_testing(CheckpointManager::FailPoint::None);
    fs::set_fail_before_rename_for_testing(false);
    remove_tree(run_dir_);
  }

  // A realistic state: a model with fp32 and bf16 tensors, a stepped AdamW, generators, cursor.
  TrainState make_state(int64_t step, uint64_t seed = 1) {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    TrainState s;
    s.step = step;
    s.model["model.embed_tokens.weight"] = at::randn({5, 3}, gen).requires_grad_(true);
    s.model["model.norm.weight"] = at::randn({3}, gen).requires_grad_(true);
    s.model["lm_head.weight"] = at::randn({5, 3}, gen).to(at::kBFloat16).requires_grad_(true);
    AdamWOptions o;
    o.lr = 0.01;
    AdamW opt(s.model, o);
    for (auto& [k, t] : s.model) t.mutable_grad() = at::randn(t.sizes(), gen).to(t.scalar_type());
    opt.step();
    s.optimizer_tensors = opt.state_tensors();
    s.optimizer = opt.state_json();
    s.scheduler = {{"type", "cosine"}, {"base_lr", 0.01}, {"total_steps", 100}};
    s.model_config = {{"hidden_size", 3}, {"vocab_size", 5}, {"rms_norm_eps", 1e-6}};
    at::randn({7});  // move the global generator off its seed
    s.rng = RngStates::capture();
    std::mt19937_64 data_engine(seed);
    data_engine.discard(5);
    s.rng.engines["data"] = engine_state(data_engine);
    s.data_cursor = {{"epoch", 1}, {"index", 7 + step}, {"seed", 42}};
    s.config_yaml = "trainer: sft\nseed: 42\n";
    s.trainer_state = {{"log_history", {{{"step", step}, {"loss", 2.5}}}}, {"best_metric", 0.3}};
    return s;
  }

  std::string ckpt(int64_t step) const { return run_dir_ + "/checkpoints/" + checkpoint_dir_name(step); }
  std::string run_dir_;
};

void expect_same_tensors(const NamedTensors& a, const NamedTensors& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, t] : a) {
    ASSERT_TRUE(b.count(k)) << k;
    EXPECT_EQ(t.scalar_type(), b.at(k).scalar_type()) << k;
    EXPECT_TRUE(at::equal(t.detach(), b.at(k))) << k;
  }
}

TEST_F(Checkpoints, SaveLoadRoundTripIsBitwiseForEveryPartOfTheState) {
  CheckpointManager m(run_dir_, 3);
  const TrainState s = make_state(123);
  const std::string path = m.save(s);
  EXPECT_EQ(path, ckpt(123));
  EXPECT_EQ(checkpoint_dir_name(123), "step-000123");
  for (const char* f : {"model.safetensors", "config.json", "optimizer.safetensors", "optimizer.json", "scheduler.json",
                        "data_cursor.json", "rng.safetensors", "rng.json", "trainer_state.json", "config.yaml",
                        "checkpoint.json"}) {
    EXPECT_TRUE(fs::exists(path + "/" + f)) << f;
  }
  EXPECT_EQ(fs::read_file(run_dir_ + "/checkpoints/latest"), "step-000123\n");

  const TrainState l = m.load();
  EXPECT_EQ(l.step, 123);
  expect_same_tensors(s.model, l.model);
  expect_same_tensors(s.optimizer_tensors, l.optimizer_tensors);
  EXPECT_EQ(l.optimizer, s.optimizer);
  EXPECT_EQ(l.scheduler, s.scheduler);
  EXPECT_EQ(l.model_config, s.model_config);
  EXPECT_EQ(l.data_cursor, s.data_cursor);
  EXPECT_EQ(l.config_yaml, s.config_yaml);
  EXPECT_EQ(l.trainer_state["global_step"], 123);
  EXPECT_EQ(l.trainer_state["best_metric"], 0.3);
  EXPECT_EQ(l.trainer_state["log_history"], s.trainer_state["log_history"]);
  EXPECT_TRUE(at::equal(l.rng.cpu, s.rng.cpu));
  EXPECT_EQ(l.rng.engines, s.rng.engines);

  // The loaded optimizer state restores an AdamW that continues exactly.
  NamedTensors params;
  for (const auto& [k, t] : l.model) params[k] = t.clone().requires_grad_(true);
  AdamW opt(params, AdamWOptions{});
  opt.load_state(l.optimizer_tensors, l.optimizer);
  EXPECT_EQ(opt.state_json(), s.optimizer);
}

TEST_F(Checkpoints, RestoredRngStatesReplayTheSameRandomNumbers) {
  at::randn({3});
  RngStates rng = RngStates::capture();
  const at::Tensor expected = at::randn({16});
  std::mt19937_64 engine(99);
  engine.discard(3);
  rng.engines["sampling"] = engine_state(engine);
  const uint64_t expected_draw = engine();

  TrainState s = make_state(5);
  s.rng = rng;
  CheckpointManager m(run_dir_, 2);
  m.save(s);
  at::randn({1000});  // advance the generator
  const TrainState l = m.load();
  l.rng.restore();
  EXPECT_TRUE(at::equal(at::randn({16}), expected));
  std::mt19937_64 restored;
  set_engine_state(restored, l.rng.engines.at("sampling"));
  EXPECT_EQ(restored(), expected_draw);
  EXPECT_THROW(set_engine_state(restored, "not a state"), UserError);
}

TEST_F(Checkpoints, CrashDuringSaveLeavesThePreviousCheckpointLatestAndLoadable) {
  CheckpointManager m(run_dir_, 2);
  const TrainState first = make_state(1, 1);
  m.save(first);
  for (auto point : {CheckpointManager::FailPoint::AfterModel, CheckpointManager::FailPoint::BeforeRename}) {
    CheckpointManager::set_fail_point_for_testing(point);
    EXPECT_THROW(m.save(make_state(2, 2)), std::runtime_error);
    CheckpointManager::set_fail_point_for_testing(CheckpointManager::FailPoint::None);
    EXPECT_FALSE(fs::exists(ckpt(2)));
    ASSERT_TRUE(m.latest().has_value());
    EXPECT_EQ(*m.latest(), ckpt(1));
    expect_same_tensors(first.model, m.load().model);
  }
  // A failing file write inside the checkpoint (atomic_write's own crash hook).
  fs::set_fail_before_rename_for_testing(true);
  EXPECT_THROW(m.save(make_state(2, 2)), std::runtime_error);
  fs::set_fail_before_rename_for_testing(false);
  EXPECT_EQ(*m.latest(), ckpt(1));
  EXPECT_EQ(m.load().step, 1);
  // Nothing half-written stays behind.
  for (const auto& e : stdfs::directory_iterator(run_dir_ + "/checkpoints")) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
}

TEST_F(Checkpoints, CrashBeforeTheLatestPointerMovesKeepsPointingAtTheOldOne) {
  CheckpointManager m(run_dir_, 5);
  m.save(make_state(1, 1));
  CheckpointManager::set_fail_point_for_testing(CheckpointManager::FailPoint::BeforeLatest);
  EXPECT_THROW(m.save(make_state(2, 2)), std::runtime_error);
  CheckpointManager::set_fail_point_for_testing(CheckpointManager::FailPoint::None);
  EXPECT_TRUE(fs::exists(ckpt(2)));  // complete, but not yet the official latest
  EXPECT_EQ(*m.latest(), ckpt(1));
  EXPECT_EQ(m.load("latest").step, 1);
  EXPECT_EQ(m.load(ckpt(2)).step, 2);  // still loadable explicitly
}

TEST_F(Checkpoints, LeftoverTempDirectoryFromACrashIsIgnoredAndCleanedUp) {
  {
    CheckpointManager m(run_dir_, 2);
    m.save(make_state(1));
  }
  const std::string leftover = run_dir_ + "/checkpoints/step-000009.tmp-4242";
  stdfs::create_directories(leftover);
  std::ofstream(leftover + "/model.safetensors") << "half a file";
  CheckpointManager rank1(run_dir_, 2, /*rank=*/1);  // other ranks never delete anything
  EXPECT_TRUE(fs::exists(leftover));
  EXPECT_EQ(*rank1.latest(), ckpt(1));
  EXPECT_EQ(rank1.list().size(), 1u);
  CheckpointManager m(run_dir_, 2);
  EXPECT_FALSE(fs::exists(leftover));
  EXPECT_EQ(m.load().step, 1);
}

TEST_F(Checkpoints, KeepLastKDeletesOlderCheckpointsOnlyAfterTheNewOneIsComplete) {
  CheckpointManager m(run_dir_, 2);
  for (int64_t step : {10, 20, 30, 40}) m.save(make_state(step));
  std::vector<std::string> expected{ckpt(30), ckpt(40)};
  EXPECT_EQ(m.list(), expected);
  EXPECT_EQ(*m.latest(), ckpt(40));
  // A failed save prunes nothing.
  CheckpointManager::set_fail_point_for_testing(CheckpointManager::FailPoint::BeforeRename);
  EXPECT_THROW(m.save(make_state(50)), std::runtime_error);
  CheckpointManager::set_fail_point_for_testing(CheckpointManager::FailPoint::None);
  EXPECT_EQ(m.list(), expected);

  CheckpointManager all(run_dir_ + "/all", 0);
  for (int64_t step : {1, 2, 3}) all.save(make_state(step));
  EXPECT_EQ(all.list().size(), 3u);
}

TEST_F(Checkpoints, SavingTheSameStepAgainReplacesIt) {
  CheckpointManager m(run_dir_, 2);
  m.save(make_state(7, 1));
  const TrainState second = make_state(7, 2);
  m.save(second);
  expect_same_tensors(second.model, m.load().model);
  EXPECT_EQ(m.list().size(), 1u);
}

TEST_F(Checkpoints, DanglingLatestPointerFallsBackToTheNewestCompleteCheckpoint) {
  CheckpointManager m(run_dir_, 3);
  m.save(make_state(1));
  m.save(make_state(2));
  fs::atomic_write(run_dir_ + "/checkpoints/latest", "step-000099\n");
  EXPECT_EQ(*m.latest(), ckpt(2));
  CheckpointManager empty(run_dir_ + "/nothing", 3);
  EXPECT_FALSE(empty.latest().has_value());
  EXPECT_THROW(empty.load(), UserError);
}

TEST_F(Checkpoints, CorruptOrIncompleteCheckpointIsAUserErrorNamingTheFile) {
  CheckpointManager m(run_dir_, 3);
  const std::string path = m.save(make_state(3));
  auto expect_user_error = [&](const std::string& needle) {
    try {
      m.load(path);
      FAIL() << "expected a UserError mentioning " << needle;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const std::string good_json = fs::read_file(path + "/optimizer.json");
  fs::atomic_write(path + "/optimizer.json", "{\"type\": \"adamw\", \"step\": ");
  expect_user_error("optimizer.json");
  fs::atomic_write(path + "/optimizer.json", good_json);
  EXPECT_EQ(m.load(path).step, 3);

  const std::string model = fs::read_file(path + "/model.safetensors");
  fs::atomic_write(path + "/model.safetensors", model.substr(0, model.size() / 2));  // truncated
  EXPECT_THROW(m.load(path), UserError);
  stdfs::remove(path + "/model.safetensors");
  expect_user_error("model.safetensors");
  stdfs::remove(path + "/checkpoint.json");
  expect_user_error("not a complete scorch checkpoint");
  EXPECT_THROW(m.load(run_dir_ + "/does-not-exist"), UserError);
}

TEST_F(Checkpoints, ResumingWithADifferentModelShapeNamesTheTensorAndBothShapes) {
  CheckpointManager m(run_dir_, 3);
  const TrainState s = make_state(4);
  m.save(s);
  NamedTensors current;
  for (const auto& [k, t] : s.model) current[k] = at::zeros(t.sizes());
  EXPECT_EQ(m.load("latest", &current).step, 4);  // same shapes: fine
  current["lm_head.weight"] = at::zeros({6, 3});
  try {
    m.load("latest", &current);
    FAIL() << "expected UserError";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("lm_head.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[5, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[6, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("resuming with a different model shape"), std::string::npos) << msg;
  }
  current.erase("lm_head.weight");
  EXPECT_THROW(m.load("latest", &current), UserError);  // a tensor the model does not have
}

TEST_F(Checkpoints, CopyIntoFillsTheModelAndRejectsMismatches) {
  const TrainState s = make_state(1);
  NamedTensors model;
  for (const auto& [k, t] : s.model) model[k] = at::zeros(t.sizes(), t.scalar_type()).requires_grad_(true);
  CheckpointManager::copy_into(s.model, model, "test");
  for (const auto& [k, t] : model) EXPECT_TRUE(at::equal(t.detach(), s.model.at(k).detach())) << k;
  NamedTensors wrong = model;
  wrong["model.norm.weight"] = at::zeros({4});
  EXPECT_THROW(CheckpointManager::copy_into(s.model, wrong, "test"), UserError);
}

}  // namespace
}  // namespace scorch
