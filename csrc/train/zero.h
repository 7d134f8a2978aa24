// ZeRO-1 (dist.zero1; Rajbhandari et al. 2020, stage 1): each rank keeps and updates the AdamW
// state of its own shard of the parameters (dist::partition_parameters: whole tensors, balanced by
// element count), so optimizer memory per rank drops to about 1/world_size. Gradients are still
// all-reduced in full (every rank needs them for the global clip norm); after the step each
// parameter is broadcast from its owner, so all ranks hold identical weights again.
//
// Checkpoints stay independent of the world size and of zero1: at a save every shard is gathered to
// rank 0, which writes one ordinary AdamW state; on resume every rank keeps its shard of it.
#pragma once
#include <map>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "train/optimizer.h"

namespace scorch::dist {
class Group;
}

namespace scorch {

// The parameters `rank` owns.
NamedTensors owned_parameters(const NamedTensors& params, const std::map<std::string, int>& owner, int rank);

// Collective: every shard's state gathered into one state (meaningful on rank 0; other ranks get
// their own shard back). The JSON is AdamW's, with param_steps and groups merged over the ranks.
std::pair<NamedTensors, nlohmann::json> gather_optimizer_state(dist::Group& group, const AdamW& shard);

// A full AdamW state cut down to the parameters `rank` owns (tensors and param_steps).
std::pair<NamedTensors, nlohmann::json> shard_optimizer_state(const NamedTensors& tensors, const nlohmann::json& state,
                                                             const std::map<std::string, int>& owner, int rank);

// Collective: every parameter broadcast from its owner.
void broadcast_from_owners(dist::Group& group, const NamedTensors& params, const std::map<std::string, int>& owner);

}  // namespace scorch
