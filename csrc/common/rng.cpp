#include "common/rng.h"

namespace scorch::rng {

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t derive(uint64_t base, std::initializer_list<uint64_t> tags) {
  uint64_t s = mix(base);
  for (uint64_t t : tags) s = mix(s ^ mix(t + 0x632BE59BD9B4E019ull));
  return s;
}

std::mt19937_64 engine(uint64_t base, std::initializer_list<uint64_t> tags) {
  return std::mt19937_64(derive(base, tags));
}

}  // namespace scorch::rng
