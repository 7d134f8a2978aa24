// The known tiktoken vocabularies (tiktoken_vocabularies.h). Each entry cites the code its pattern
// and special tokens are transcribed from; the python parity test (tests/python/
// test_tiktoken_parity.py) rebuilds the first three with the `tiktoken` package from those sources.
#include "tokenizer/tiktoken_vocabularies.h"

namespace scorch {
namespace {

std::vector<TiktokenVocabulary> build() {
  std::vector<TiktokenVocabulary> v;

  // Llama 3, 3.1, 3.2, 3.3: llama-models, models/llama3/tokenizer.py (Tokenizer.pat_str and the 256
  // special tokens after the 128,000 ranks: 12 named, then <|reserved_special_token_2..245|>).
  {
    TiktokenVocabulary t;
    t.name = "llama3";
    t.description = "Llama 3.x (llama-models' tokenizer.model, a checkpoint's original/tokenizer.model)";
    t.ranks = 128000;
    t.sha256 = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55";
    t.pattern = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    const char* named[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                           "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                           "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                           "<|python_tag|>", "<|image|>"};
    for (const char* s : named) t.special_tokens.emplace_back(s, t.ranks + static_cast<int64_t>(t.special_tokens.size()));
    for (int i = 2; t.special_tokens.size() < 256; ++i) {
      t.special_tokens.emplace_back("<|reserved_special_token_" + std::to_string(i) + "|>",
                                    t.ranks + static_cast<int64_t>(t.special_tokens.size()));
    }
    t.bos = "<|begin_of_text|>";
    t.eos = "<|end_of_text|>";
    t.pad = "<|finetune_right_pad_id|>";
    t.stop = {"<|eom_id|>", "<|eot_id|>"};
    t.add_bos = true;
    v.push_back(std::move(t));
  }

  // Qwen (1st generation, Qwen-7B/14B/72B and their chat models): qwen.tiktoken; pattern and special
  // tokens from tokenization_qwen.py (PAT_STR; <|endoftext|>, <|im_start|>, <|im_end|>, then
  // <|extra_0..204|> from 151643), as dashscope's tokenizers/qwen_tokenizer.py repeats them.
  {
    TiktokenVocabulary t;
    t.name = "qwen";
    t.description = "Qwen (qwen.tiktoken)";
    t.ranks = 151643;
    t.sha256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186";
    t.pattern = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
      t.special_tokens.emplace_back(s, t.ranks + static_cast<int64_t>(t.special_tokens.size()));
    }
    for (int i = 0; i < 205; ++i) {
      t.special_tokens.emplace_back("<|extra_" + std::to_string(i) + "|>",
                                    t.ranks + static_cast<int64_t>(t.special_tokens.size()));
    }
    t.eos = "<|endoftext|>";
    t.stop = {"<|im_end|>"};
    v.push_back(std::move(t));
  }

  // GPT-2 (r50k_base; openai-whisper ships it as gpt2.tiktoken): tiktoken_ext/openai_public.py.
  const std::string r50k_pattern = R"('(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s)";
  {
    TiktokenVocabulary t;
    t.name = "r50k_base";
    t.description = "GPT-2 (r50k_base.tiktoken, whisper's gpt2.tiktoken)";
    t.ranks = 50256;
    t.sha256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930";
    t.pattern = r50k_pattern;
    t.special_tokens = {{"<|endoftext|>", 50256}};
    t.eos = "<|endoftext|>";
    v.push_back(std::move(t));
  }

  // OpenAI's cl100k_base and o200k_base: tiktoken_ext/openai_public.py (rank counts: the ranks below
  // the first special token). Their files are not on PyPI, so no parity test runs on them here.
  {
    TiktokenVocabulary t;
    t.name = "cl100k_base";
    t.description = "cl100k_base.tiktoken";
    t.ranks = 100256;
    t.sha256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7";
    t.pattern = R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s)";
    t.special_tokens = {{"<|endoftext|>", 100257},
                        {"<|fim_prefix|>", 100258},
                        {"<|fim_middle|>", 100259},
                        {"<|fim_suffix|>", 100260},
                        {"<|endofprompt|>", 100276}};
    t.eos = "<|endoftext|>";
    v.push_back(std::move(t));
  }
  {
    TiktokenVocabulary t;
    t.name = "o200k_base";
    t.description = "o200k_base.tiktoken";
    t.ranks = 199998;
    t.sha256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d";
    t.pattern = std::string(R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)") +
                R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)" +
                R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    t.special_tokens = {{"<|endoftext|>", 199999}, {"<|endofprompt|>", 200018}};
    t.eos = "<|endoftext|>";
    v.push_back(std::move(t));
  }
  return v;
}

}  // namespace

const std::vector<TiktokenVocabulary>& known_tiktoken_vocabularies() {
  static const std::vector<TiktokenVocabulary> table = build();
  return table;
}

const TiktokenVocabulary* find_tiktoken_vocabulary(int64_t ranks, const std::string& sha256) {
  for (const TiktokenVocabulary& v : known_tiktoken_vocabularies()) {
    if (v.ranks == ranks && v.sha256 == sha256) return &v;
  }
  return nullptr;
}

const TiktokenVocabulary* tiktoken_vocabulary_named(const std::string& name) {
  if (name == "gpt2") return tiktoken_vocabulary_named("r50k_base");  // tiktoken's gpt2 has r50k's pattern
  for (const TiktokenVocabulary& v : known_tiktoken_vocabularies()) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

}  // namespace scorch
