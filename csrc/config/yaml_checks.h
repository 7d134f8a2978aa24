// Checks every YAML reader of scorch applies before binding values (the job config, a rewards
// file, reward params). yaml-cpp keeps both of two equal keys in a mapping and lookups return the
// first, so `learning_rate` written twice would silently train with the first value.
#pragma once
#include <string>

#include <yaml-cpp/yaml.h>

namespace scorch {

// Throws UserError "config error in SOURCE:LINE: duplicate key `a.b` (first at line N) ..." for the
// first mapping (at any depth, lists included) that holds a key twice.
void check_no_duplicate_keys(const YAML::Node& node, const std::string& source);

}  // namespace scorch
