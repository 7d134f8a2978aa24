// torchrun's environment contract, ZeRO ownership and the data cursor across world sizes.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <map>
#include <set>
#include <string>

#include "common/error.h"
#include "data/cursor.h"
#include "dist/data_parallel.h"
#include "dist/dist.h"

namespace {
using scorch::dist::parse_launch_env;

auto env_of(std::map<std::string, std::string> vars) {
  // Pointers into the captured map stay valid, as getenv's do.
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}
}  // namespace

TEST(LaunchEnv, WithoutVariablesIsASingleProcess) {
  const auto e = parse_launch_env(env_of({}));
  EXPECT_FALSE(e.launched);
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world_size, 1);
}

TEST(LaunchEnv, ReadsTorchrunsVariables) {
  const auto e = parse_launch_env(env_of({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "4"},
                                          {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29511"},
                                          {"TORCHELASTIC_USE_AGENT_STORE", "True"}}));
  EXPECT_TRUE(e.launched);
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 4);
  EXPECT_EQ(e.master_addr, "node0");
  EXPECT_EQ(e.master_port, 29511);
  EXPECT_TRUE(e.agent_store);
  // srun-style: no LOCAL_* -> one node, local rank = rank
  const auto s = parse_launch_env(env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}}));
  EXPECT_EQ(s.local_rank, 1);
  EXPECT_EQ(s.local_world_size, 2);
  EXPECT_FALSE(s.agent_store);
}

TEST(LaunchEnv, BadValuesNameTheVariable) {
  auto message = [](std::map<std::string, std::string> vars) {
    try {
      parse_launch_env(env_of(std::move(vars)));
    } catch (const scorch::UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("RANK='2'"), std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}}).find("WORLD_SIZE is not"), std::string::npos);
  EXPECT_NE(message({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK='x'"), std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}).find("MASTER_PORT"), std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "3"}, {"LOCAL_WORLD_SIZE", "2"}}).find("LOCAL_RANK"),
            std::string::npos);
}

TEST(LaunchEnv, NoGroupWithoutALaunch) {
  EXPECT_EQ(scorch::dist::init_process_group(parse_launch_env(env_of({})), "auto", 5), nullptr);
  EXPECT_EQ(scorch::dist::world_size(), 1);
  EXPECT_EQ(scorch::dist::rank(), 0);
}

TEST(ZeroPartition, EveryParameterHasOneOwnerAndLoadsBalance) {
  scorch::dist::TensorMap params;
  int64_t total = 0;
  for (int k = 0; k < 9; ++k) {
    params["w" + std::to_string(k)] = at::zeros({(k + 1) * 100});
    total += (k + 1) * 100;
  }
  const auto owner = scorch::dist::partition_parameters(params, 3);
  ASSERT_EQ(owner.size(), params.size());
  std::map<int, int64_t> load;
  for (const auto& [name, r] : owner) {
    ASSERT_GE(r, 0);
    ASSERT_LT(r, 3);
    load[r] += params[name].numel();
  }
  for (const auto& [r, n] : load) EXPECT_LE(std::abs(n - total / 3), 900) << "rank " << r;  // within the largest tensor
  EXPECT_EQ(owner, scorch::dist::partition_parameters(params, 3));  // deterministic
}

// Step k of W ranks taking b samples covers the entries one rank taking W·b covers, and a cursor
// saved under one world size continues under another where the others left off.
TEST(DataCursorWorlds, ShardsUnionToTheSingleRankBatchAndRestoreAcrossWorldSizes) {
  const int64_t n = 40, b = 3;
  scorch::data::DataCursor one(n, 9, true, 0, 1);
  scorch::data::DataCursor r0(n, 9, true, 0, 2), r1(n, 9, true, 1, 2);
  for (int step = 0; step < 4; ++step) {
    auto all = one.next_batch(2 * b);
    auto a = r0.next_batch(b), c = r1.next_batch(b);
    std::multiset<int64_t> want(all.begin(), all.end()), got(a.begin(), a.end());
    got.insert(c.begin(), c.end());
    EXPECT_EQ(want, got) << "step " << step;
  }
  // 2 ranks -> 1 rank: continues exactly where the single-rank run is.
  scorch::data::DataCursor resumed(n, 9, true, 0, 1);
  resumed.restore(r0.to_json());
  EXPECT_EQ(resumed.next_batch(2 * b), one.next_batch(2 * b));
  // 1 rank -> 2 ranks.
  scorch::data::DataCursor s0(n, 9, true, 0, 2), s1(n, 9, true, 1, 2);
  s0.restore(one.to_json());
  s1.restore(one.to_json());
  auto all = one.next_batch(2 * b);
  auto a = s0.next_batch(b), c = s1.next_batch(b);
  std::multiset<int64_t> want(all.begin(), all.end()), got(a.begin(), a.end());
  got.insert(c.begin(), c.end());
  EXPECT_EQ(want, got);
  // Another dataset is still refused.
  scorch::data::DataCursor other(n + 1, 9, true, 0, 1);
  EXPECT_THROW(other.restore(r0.to_json()), scorch::UserError);
}
