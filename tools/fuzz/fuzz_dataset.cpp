// One JSONL dataset file (usually one line) read as each format: SFT (prompt/completion, messages,
// text), preference pairs and RL prompts. Every loader must accept it or refuse it with a UserError
// naming the file.
#include "data/dataset.h"
#include "fuzz_util.h"

namespace {

template <class Load>
void check(Load load, const std::string& path, bool skip_malformed) {
  try {
    scorch::data::DatasetOptions options;
    options.skip_malformed = skip_malformed;
    load(path, options);
  } catch (const scorch::UserError& e) {
    scorch::fuzz::expect_named(e, path);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace scorch::data;
  const std::string path = scorch::fuzz::write_scratch("data.jsonl", data, size);
  check(load_sft_dataset, path, false);
  check(load_preference_dataset, path, false);
  check(load_prompt_dataset, path, false);
  check(load_prompt_dataset, path, true);
  return 0;
}
