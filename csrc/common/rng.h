// Seeded randomness. Every stream scorch uses is derived from the config's seed and a purpose tag,
// so adding a new consumer never shifts another's numbers.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <random>

namespace scorch::rng {

// SplitMix64 finaliser: a good 64-bit mix for deriving independent seeds.
uint64_t mix(uint64_t x);
// Seed for (base, tags...): derive(seed, {kTagData, epoch}) etc.
uint64_t derive(uint64_t base, std::initializer_list<uint64_t> tags);

// Tags for the streams scorch uses (stable values: changing one changes results).
enum Tag : uint64_t {
  kTagData = 1,
  kTagInit = 2,
  kTagSampling = 3,
  kTagDropout = 4,
  kTagGenerator = 5,
  kTagLora = 6,
};

std::mt19937_64 engine(uint64_t base, std::initializer_list<uint64_t> tags);

}  // namespace scorch::rng
