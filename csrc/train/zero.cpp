#include "train/zero.h"

#include <ATen/ATen.h>

#include <set>

#include "dist/dist.h"

namespace scorch {

NamedTensors owned_parameters(const NamedTensors& params, const std::map<std::string, int>& owner, int rank) {
  NamedTensors out;
  for (const auto& [name, p] : params) {
    if (owner.at(name) == rank) out.emplace(name, p);
  }
  return out;
}

std::pair<NamedTensors, nlohmann::json> gather_optimizer_state(dist::Group& group, const AdamW& shard) {
  const NamedTensors mine = shard.state_tensors();
  nlohmann::json manifest = {{"state", shard.state_json()}, {"tensors", nlohmann::json::object()}};
  for (const auto& [key, t] : mine) manifest["tensors"][key] = t.sizes().vec();
  const std::vector<std::string> all = group.all_gather_bytes(manifest.dump());

  NamedTensors merged;
  nlohmann::json state = shard.state_json();
  std::map<std::string, std::set<std::string>> group_params;
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    const nlohmann::json m = nlohmann::json::parse(all[static_cast<size_t>(r)]);
    for (const auto& [name, steps] : m["state"]["param_steps"].items()) state["param_steps"][name] = steps;
    for (const auto& g : m["state"]["groups"]) {
      for (const auto& p : g["params"]) group_params[g["name"].get<std::string>()].insert(p.get<std::string>());
    }
    for (const auto& [key, shape] : m["tensors"].items()) {
      at::Tensor t = r == group.rank() ? mine.at(key).clone() : at::empty(shape.get<std::vector<int64_t>>(), at::kFloat);
      group.broadcast(t, r);
      if (group.rank() == 0 || r == group.rank()) merged.emplace(key, t);
    }
  }
  for (auto& g : state["groups"]) {
    const auto& names = group_params[g["name"].get<std::string>()];
    g["params"] = std::vector<std::string>(names.begin(), names.end());
  }
  return {merged, state};
}

std::pair<NamedTensors, nlohmann::json> shard_optimizer_state(const NamedTensors& tensors, const nlohmann::json& state,
                                                             const std::map<std::string, int>& owner, int rank) {
  auto mine = [&](const std::string& name) {
    auto it = owner.find(name);
    return it != owner.end() && it->second == rank;
  };
  NamedTensors out;
  for (const auto& [key, t] : tensors) {
    const std::string name = key.substr(key.find('/') + 1);  // "exp_avg/<name>" -> <name>
    if (mine(name)) out.emplace(key, t);
  }
  nlohmann::json s = state;
  if (s.contains("param_steps") && s["param_steps"].is_object()) {
    nlohmann::json steps = nlohmann::json::object();
    for (const auto& [name, v] : s["param_steps"].items()) {
      if (mine(name)) steps[name] = v;
    }
    s["param_steps"] = steps;
  }
  return {out, s};
}

void broadcast_from_owners(dist::Group& group, const NamedTensors& params, const std::map<std::string, int>& owner) {
  for (const auto& [name, p] : params) {
    at::Tensor v = p.detach();
    group.broadcast(v, owner.at(name));
  }
}

}  // namespace scorch
