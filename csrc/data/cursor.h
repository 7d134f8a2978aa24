// Where a run is in its data: a seeded shuffled order per epoch and a position in it. A checkpoint
// saves it (to_json) and a resumed run restores it, so the resumed run sees exactly the samples the
// uninterrupted run would have seen next, including across an epoch boundary.
//
// Epoch e's order is a Fisher-Yates shuffle drawn from rng::derive(seed, {kTagData, e}) with raw
// engine output (portable across standard libraries); shuffle = false keeps file order. With
// world_size > 1 each rank takes every world_size-th entry of that order starting at its rank,
// cut to floor(size / world_size) so all ranks run the same number of steps per epoch. Step k of
// W ranks taking b samples each therefore covers the same entries of the order as step k of one
// rank taking W·b, and a cursor saved with one world size restores under another (restore()).
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace scorch::data {

class DataCursor {
 public:
  DataCursor(int64_t dataset_size, uint64_t seed, bool shuffle = true, int64_t rank = 0, int64_t world_size = 1);

  // The next dataset index for this rank; after the last one of an epoch, the next epoch begins.
  int64_t next();
  std::vector<int64_t> next_batch(int64_t n);

  int64_t epoch() const { return epoch_; }
  int64_t index() const { return index_; }  // samples of this epoch already taken (per rank)
  int64_t samples_per_epoch() const { return per_rank_; }
  // The full (unsharded) order of an epoch; exposed for tests and logging.
  std::vector<int64_t> epoch_order(int64_t epoch) const;

  // {"epoch", "index", "seed", "dataset_size", "shuffle", "rank", "world_size"}
  nlohmann::json to_json() const;
  // Restores epoch/index. A state saved for another dataset size, seed or shuffle setting is a
  // UserError (the order would differ silently otherwise). One saved with another world size
  // continues after the index·world entries all its ranks had taken (warned when that is not a
  // whole number of rounds of this world size).
  void restore(const nlohmann::json& state);
  static DataCursor from_json(const nlohmann::json& state);

 private:
  void load_epoch();

  int64_t size_;
  uint64_t seed_;
  bool shuffle_;
  int64_t rank_, world_size_, per_rank_;
  int64_t epoch_ = 0, index_ = 0;
  int64_t loaded_epoch_ = -1;
  std::vector<int64_t> shard_;  // this rank's indices for loaded_epoch_
};

}  // namespace scorch::data
