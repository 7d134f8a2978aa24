// Declarations only; see README.md. ProcessGroupGloo::setTimeout (inline, never called by scorch)
// names Context::setTimeout.
#pragma once
#include <chrono>
namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
}  // namespace gloo
