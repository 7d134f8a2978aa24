// The resumable shuffling cursor (see cursor.h).
#include "data/cursor.h"

#include <numeric>
#include <stdexcept>
#include <string>

#include "common/error.h"
#include "common/log.h"
#include "common/rng.h"

namespace scorch::data {

DataCursor::DataCursor(int64_t dataset_size, uint64_t seed, bool shuffle, int64_t rank, int64_t world_size)
    : size_(dataset_size), seed_(seed), shuffle_(shuffle), rank_(rank), world_size_(world_size) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw std::invalid_argument("DataCursor: rank " + std::to_string(rank) + " outside world size " +
                                std::to_string(world_size));
  }
  per_rank_ = dataset_size / world_size;
  if (per_rank_ < 1) {
    throw UserError("the dataset has " + std::to_string(dataset_size) + " samples, fewer than the " +
                    std::to_string(world_size) + " ranks that must share it");
  }
}

std::vector<int64_t> DataCursor::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(size_));
  std::iota(order.begin(), order.end(), 0);
  if (!shuffle_) return order;
  std::mt19937_64 engine = rng::engine(seed_, {rng::kTagData, static_cast<uint64_t>(epoch)});
  for (int64_t i = size_ - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(engine() % static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

void DataCursor::load_epoch() {
  if (loaded_epoch_ == epoch_) return;
  const std::vector<int64_t> order = epoch_order(epoch_);
  shard_.clear();
  for (int64_t k = 0; k < per_rank_; ++k) shard_.push_back(order[rank_ + k * world_size_]);
  loaded_epoch_ = epoch_;
}

int64_t DataCursor::next() {
  if (index_ >= per_rank_) {
    ++epoch_;
    index_ = 0;
  }
  load_epoch();
  return shard_[index_++];
}

std::vector<int64_t> DataCursor::next_batch(int64_t n) {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.push_back(next());
  return out;
}

nlohmann::json DataCursor::to_json() const {
  return {{"epoch", epoch_}, {"index", index_}, {"seed", seed_}, {"dataset_size", size_},
          {"shuffle", shuffle_}, {"rank", rank_}, {"world_size", world_size_}};
}

void DataCursor::restore(const nlohmann::json& s) {
  try {
    const auto size = s.at("dataset_size").get<int64_t>();
    const auto seed = s.at("seed").get<uint64_t>();
    const auto shuffle = s.at("shuffle").get<bool>();
    const auto world = s.at("world_size").get<int64_t>();
    if (size != size_ || seed != seed_ || shuffle != shuffle_) {
      throw UserError("the checkpoint's data cursor was saved for dataset_size " + std::to_string(size) + ", seed " +
                      std::to_string(seed) + ", shuffle " + (shuffle ? "true" : "false") + "; this run has " +
                      std::to_string(size_) + ", " + std::to_string(seed_) + ", " + (shuffle_ ? "true" : "false") +
                      ". Fix: resume with the same data and seed");
    }
    const auto epoch = s.at("epoch").get<int64_t>();
    const auto index = s.at("index").get<int64_t>();
    if (world < 1 || epoch < 0 || index < 0 || index > size / world) {
      throw UserError("the checkpoint's data cursor is corrupt (epoch/index out of range)");
    }
    epoch_ = epoch;
    index_ = index;
    if (world != world_size_) {
      // Another world size: the ranks together had taken index·world entries of the epoch's order;
      // continue after them (rounded down to whole rounds of this world size, capped at the epoch).
      const int64_t taken = index * world;
      index_ = std::min(per_rank_, taken / world_size_);
      if (taken % world_size_ != 0) {
        log::warn("resuming with ", world_size_, " ranks a data cursor saved with ", world, ": ", taken % world_size_,
                  " samples of the epoch are seen again");
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw UserError(std::string("the checkpoint's data cursor is corrupt: ") + e.what());
  }
}

DataCursor DataCursor::from_json(const nlohmann::json& s) {
  try {
    DataCursor c(s.at("dataset_size").get<int64_t>(), s.at("seed").get<uint64_t>(), s.at("shuffle").get<bool>(),
                 s.value("rank", int64_t{0}), s.value("world_size", int64_t{1}));
    c.restore(s);
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw UserError(std::string("the checkpoint's data cursor is corrupt: ") + e.what());
  }
}

}  // namespace scorch::data
