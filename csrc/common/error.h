// User-facing errors and exit codes (DESIGN.md "Errors and exit codes").
// A UserError is something the user can fix (config, data, checkpoint, CLI): the CLI prints its
// message without a stack trace and exits 2. Anything else escaping to main() is internal: exit 1.
#pragma once
#include <stdexcept>
#include <string>

#ifndef SCORCH_VERSION_STRING
#ifdef SCORCH_VERSION
#define SCORCH_VERSION_STRING SCORCH_VERSION
#else
#define SCORCH_VERSION_STRING "dev"
#endif
#endif

namespace scorch {

enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,
  kExitUser = 2,
  kExitNonFinite = 3,
};

class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& what) : std::runtime_error(what) {}
};

// Raised when the non-finite-loss policy stops a run (exit 3).
class NonFiniteStop : public std::runtime_error {
 public:
  explicit NonFiniteStop(const std::string& what) : std::runtime_error(what) {}
};

// Raised for a setting or capability scorch does not implement: a user error (exit 2), never fake output.
class NotImplemented : public UserError {
 public:
  explicit NotImplemented(const std::string& what)
      : UserError(what + " is not implemented yet in scorch " SCORCH_VERSION_STRING) {}
};

}  // namespace scorch

