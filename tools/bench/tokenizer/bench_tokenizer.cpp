// Encode throughput of scorch's tokenizer on one thread (driven by tools/bench/tokenizer/run.py).
// Usage: scorch_bench_tokenizer TOKENIZER TEXT_FILE REPEATS
// Encodes the file line by line REPEATS times (the first pass fills the BPE cache, as a long run
// would) and prints {"bytes", "tokens", "seconds"} of the timed passes as JSON.
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: scorch_bench_tokenizer TOKENIZER TEXT_FILE REPEATS\n";
    return 2;
  }
  auto tok = scorch::load_tokenizer(argv[1]);
  std::ifstream in(argv[2], std::ios::binary);
  std::vector<std::string> lines;
  size_t bytes = 0;
  for (std::string line; std::getline(in, line);) {
    bytes += line.size();
    lines.push_back(std::move(line));
  }
  const int repeats = std::stoi(argv[3]);
  size_t tokens = 0;
  for (const auto& l : lines) tokens += tok->encode(l).size();  // warm-up pass
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r) {
    for (const auto& l : lines) tokens += tok->encode(l).size();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "{\"bytes\": " << bytes * repeats << ", \"tokens\": " << tokens << ", \"seconds\": " << s << "}\n";
  return 0;
}
