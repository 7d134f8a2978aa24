// Test helper for tests/python/test_*tokenizer_parity.py and test_chat_template_parity.py: our
// Tokenizer and ChatRenderer from outside the process.
// Usage: tokenize_ids TOKENIZER [--parse-special] < strings.jsonl
//   Each input line is a JSON string; each output line is {"ids": [...], "decoded": "..."};
//   --parse-special loads the tokenizer with TokenizerOptions::parse_special.
// Usage: tokenize_ids TOKENIZER --chat < conversations.jsonl
//   Each input line is {"messages": [...], "add_generation_prompt": bool, "kwargs": {...}}; each
//   output line is {"ids": [...]} (render_prompt or render) or {"error": "..."}; chat template auto.
// Usage: tokenize_ids TOKENIZER --export DIR
//   Writes what an export writes for the tokenizer (Tokenizer::hf_export_files: a tiktoken rank
//   file's tokenizer.json + tokenizer_config.json) into DIR; nothing for other tokenizers.
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[2]) == "--export") {
    for (const auto& [name, content] : scorch::load_tokenizer(argv[1])->hf_export_files()) {
      std::ofstream(std::string(argv[3]) + "/" + name, std::ios::binary) << content;
    }
    return 0;
  }
  const bool chat = argc == 3 && std::string(argv[2]) == "--chat";
  const bool parse_special = argc == 3 && std::string(argv[2]) == "--parse-special";
  if (argc != 2 && !chat && !parse_special) {
    std::cerr << "usage: tokenize_ids TOKENIZER [--chat | --parse-special] < lines.jsonl\n";
    return 2;
  }
  scorch::TokenizerOptions options;
  options.parse_special = parse_special;
  auto tok = scorch::load_tokenizer(argv[1], options);
  std::string line;
  while (std::getline(std::cin, line)) {
    const nlohmann::json in = nlohmann::json::parse(line);
    if (!chat) {
      const auto ids = tok->encode(in.get<std::string>());
      std::cout << nlohmann::json{{"ids", ids}, {"decoded", tok->decode(ids)}}.dump() << '\n';
      continue;
    }
    try {
      const scorch::ChatRenderer renderer(*tok, "auto", in.value("kwargs", nlohmann::json::object()).dump());
      std::vector<scorch::ChatMessage> messages;
      for (const auto& m : in["messages"]) messages.push_back({m["role"], m["content"], true});
      const auto ids = in.value("add_generation_prompt", false) ? renderer.render_prompt(messages)
                                                                : renderer.render(messages).ids;
      std::cout << nlohmann::json{{"ids", ids}}.dump() << '\n';
    } catch (const scorch::UserError& e) {
      std::cout << nlohmann::json{{"error", e.what()}}.dump() << '\n';
    }
  }
  return 0;
}
