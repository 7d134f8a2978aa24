// Command-line names of the config's options (options.h).
#include "config/options.h"

#include "common/error.h"

namespace scorch {

DecodeSteps parse_decode_steps(const std::string& name) {
  DecodeSteps steps = DecodeSteps::kAuto;
  if (parse_option(name, steps)) return steps;
  const auto names = option_names(steps);
  std::string valid;
  for (size_t i = 0; i < names.size(); ++i) valid += std::string(i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  throw UserError("decode steps must be " + valid + ", got '" + name + "'");
}

}  // namespace scorch
