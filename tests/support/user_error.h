// The message of the UserError that `f` throws, for tests of bad input.
#pragma once
#include <functional>
#include <string>

#include "common/error.h"

namespace scorch::test {

inline std::string user_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const scorch::UserError& e) {
    return e.what();
  }
  return "(no UserError)";
}

}  // namespace scorch::test
