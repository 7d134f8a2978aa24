// Test helper for tests/python/test_tokenizer_parity.py: our Tokenizer from outside the process.
// Usage: tokenize_ids TOKENIZER (tokenizer.json, tokenizer.model or their directory) < strings.jsonl
// Each input line is a JSON string; each output line is {"ids": [...], "decoded": "..."}.
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tokenize_ids TOKENIZER < strings.jsonl\n";
    return 2;
  }
  auto tok = scorch::load_tokenizer(argv[1]);
  std::string line;
  while (std::getline(std::cin, line)) {
    const std::string text = nlohmann::json::parse(line).get<std::string>();
    const auto ids = tok->encode(text);
    nlohmann::json out = {{"ids", ids}, {"decoded", tok->decode(ids)}};
    std::cout << out.dump() << '\n';
  }
  return 0;
}
