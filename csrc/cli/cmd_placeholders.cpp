// Subcommands whose issues have not landed yet. When one lands, its register_* moves to its own
// cmd_<name>.cpp and the line here goes away.
#include "cli/commands.h"

namespace scorch::cli {


}  // namespace scorch::cli
