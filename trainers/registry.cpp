#include "trainers/registry.h"

#include "common/error.h"

namespace scorch::trainers {

void run(const Config& config, const RunDir&, const RunOptions&) {
  // Each trainer's issue replaces its line with a call into trainers/<name>/.
  throw NotImplemented("the `" + config.trainer + "` trainer");
}

}  // namespace scorch::trainers
