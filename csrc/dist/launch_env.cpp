// torchrun's environment contract (dist.h) and the process-wide group pointer.
#include <cstdlib>
#include <string>

#include "common/error.h"
#include "dist/dist.h"

namespace scorch::dist {
namespace {

int parse_int(const char* name, const char* value, int lo, int hi) {
  const std::string s(value);
  try {
    size_t used = 0;
    const long v = std::stol(s, &used);
    if (used == s.size() && v >= lo && v <= hi) return static_cast<int>(v);
  } catch (const std::exception&) {
  }
  throw UserError(std::string("environment variable ") + name + "='" + s + "' is not an integer in [" +
                  std::to_string(lo) + ", " + std::to_string(hi) +
                  "]; launch with torchrun or tools/launch, which set it, or unset it for a single process");
}

Group* g_current = nullptr;

}  // namespace

LaunchEnv parse_launch_env(const std::function<const char*(const char*)>& get) {
  LaunchEnv env;
  const char* rank = get("RANK");
  const char* world = get("WORLD_SIZE");
  if (!rank && !world) return env;
  if (!rank || !world) {
    throw UserError(std::string(rank ? "RANK" : "WORLD_SIZE") + " is set but " + (rank ? "WORLD_SIZE" : "RANK") +
                    " is not: a distributed launch sets both (torchrun, tools/launch, or srun with both exported)");
  }
  env.launched = true;
  env.world_size = parse_int("WORLD_SIZE", world, 1, 1 << 20);
  env.rank = parse_int("RANK", rank, 0, env.world_size - 1);
  if (const char* v = get("LOCAL_WORLD_SIZE")) env.local_world_size = parse_int("LOCAL_WORLD_SIZE", v, 1, env.world_size);
  else env.local_world_size = env.world_size;
  if (const char* v = get("LOCAL_RANK")) env.local_rank = parse_int("LOCAL_RANK", v, 0, env.local_world_size - 1);
  else env.local_rank = env.rank % env.local_world_size;
  if (const char* v = get("MASTER_ADDR"); v && *v) env.master_addr = v;
  if (const char* v = get("MASTER_PORT")) env.master_port = parse_int("MASTER_PORT", v, 1, 65535);
  if (const char* v = get("TORCHELASTIC_USE_AGENT_STORE")) env.agent_store = std::string(v) == "True" || std::string(v) == "1";
  return env;
}

LaunchEnv read_launch_env() {
  return parse_launch_env([](const char* name) { return std::getenv(name); });
}

void set_current(Group* group) { g_current = group; }
Group* current() { return g_current; }
int rank() { return g_current ? g_current->rank() : 0; }
int world_size() { return g_current ? g_current->size() : 1; }
int local_rank() { return g_current ? g_current->local_rank() : 0; }

}  // namespace scorch::dist
