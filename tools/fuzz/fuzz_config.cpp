// The YAML job config: parse, schema and cross-field checks. The input up to its first NUL byte is
// the YAML text; each NUL-separated piece after it is a `--set key=value` override.
#include "config/config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string yaml = input.substr(0, nul);
  std::vector<std::string> overrides;
  for (size_t at = nul; at != std::string::npos && at < input.size();) {
    const size_t next = input.find('\0', at + 1);
    overrides.push_back(input.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1));
    at = next;
  }
  try {
    const scorch::Config config = scorch::parse_config(yaml, "fuzz.yaml", overrides);
    (void)scorch::to_yaml(config);
  } catch (const scorch::UserError&) {
  }
  return 0;
}
