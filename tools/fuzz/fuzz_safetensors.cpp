// safetensors files and the sharded-checkpoint index. An input starting with '{' is the text of a
// model.safetensors.index.json (a safetensors file starts with its 8-byte header length, so the
// two never mix); anything else is a whole .safetensors file, loaded (header checks, then tensors).
#include <ATen/ATen.h>

#include "fuzz_util.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace scorch;
  if (size > 0 && data[0] == '{') {
    const std::string index = "fuzz/model.safetensors.index.json";
    try {
      safetensors::parse_shard_index(std::string(reinterpret_cast<const char*>(data), size), index);
    } catch (const UserError& e) {
      fuzz::expect_named(e, index);
    }
    return 0;
  }
  const std::string path = fuzz::write_scratch("model.safetensors", data, size);
  try {
    safetensors::Metadata metadata;
    const safetensors::TensorMap tensors = safetensors::load(path, &metadata);
    for (const auto& [name, t] : tensors) (void)t.numel();
  } catch (const UserError& e) {
    fuzz::expect_named(e, path);
  }
  return 0;
}
