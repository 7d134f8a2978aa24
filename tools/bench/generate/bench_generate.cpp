// scorch_bench_generate: tokens/s of GenerationEngine::generate on a HF model directory, for the
// comparison with transformers' generate() in run.py / gpu.sh (which start this program with the
// same weights and thread count). Prints one JSON object per configuration on stdout.
//
//   scorch_bench_generate --model DIR --batch 1,8,32 [--prompt-len 64 --new-tokens 128 --threads N
//     --device cpu|cuda --dtype bfloat16 --repeats 3 --temperature 1 --stop-every K --no-compact
//     --decode auto|dynamic|static|cuda_graph --count-ops --profile-steps --kernel-profile K
//     --fused-attention --no-lookahead]
// --fused-attention: EngineOptions::fused_decode_attention (static steps: kernels' decode_attention).
// --no-lookahead: EngineOptions::lookahead off (static steps wait for the host between steps).
// --profile-steps: time the parts of each decode step (the device is waited for after each; see
// EngineOptions::profile_steps), printed as step_{forward,sample,host}_us per step.
// --count-ops: also count the top-level ATen / scorch ops one decode step dispatches (ops called
// from inside another op are not counted): ops of a run with new-tokens minus ops of a run with
// new-tokens / 2, divided by the steps between them. On CUDA each is one or a few kernel launches,
// so the count stands in for the launches of an eager (non-graph) step on any device;
// compute_ops_per_step leaves out pure view ops (narrow, select, ...), which launch nothing.
// --kernel-profile K: where one decode step's device time goes, per kernel. Two generate() calls run
// under libtorch's Kineto profiler (CUPTI on CUDA), one with new-tokens / 2 and one with new-tokens;
// the difference of their per-name device times, divided by the steps between them, is one steady
// decode step's share of each kernel (prefill, warm-up and graph capture cancel out). Prints a
// "kernels" list (the K largest) and device_busy_us_per_step, the sum over all of them: set beside
// the step's wall time it shows how much of a step the device idles. On CPU the events are ops with
// inclusive times (an op's callees are counted in it too), so only the GPU figures add up.
// --stop-every K: every K-th vocabulary id is a stop id, so samples end at varied lengths (the
// workload where dropping finished rows matters); without it every sample runs new-tokens tokens.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "common/error.h"
#include "common/strings.h"
#include "model/hf_checkpoint.h"
#include "rollout/engine.h"

using namespace scorch;

namespace {
void synchronize(const at::Device& d) {
  if (d.is_cuda()) at::empty({1}, at::TensorOptions().device(d)).cpu();  // waits for the stream
}

// Top-level ops dispatched on this thread while `run` runs: {all, without pure view ops} (a view
// -- narrow, select, transpose, ... -- launches no kernel).
thread_local int64_t g_op_depth = 0;
thread_local int64_t g_ops[2] = {0, 0};
bool is_view_op(const char* name) {
  static const char* const kViews[] = {"aten::view", "aten::narrow", "aten::select", "aten::transpose", "aten::slice",
                                       "aten::unsqueeze", "aten::squeeze", "aten::expand", "aten::as_strided",
                                       "aten::alias", "aten::t", "aten::permute", "aten::detach", "aten::_reshape_alias"};
  for (const char* v : kViews) {
    if (std::strcmp(name, v) == 0) return true;
  }
  return false;
}
template <class F>
std::pair<int64_t, int64_t> count_top_level_ops(F&& run) {
  g_op_depth = 0;
  g_ops[0] = g_ops[1] = 0;
  const at::CallbackHandle handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(
          [](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
            if (g_op_depth++ == 0) {
              ++g_ops[0];
              if (!is_view_op(fn.name())) ++g_ops[1];
            }
            return nullptr;
          },
          [](const at::RecordFunction&, at::ObserverContext*) { --g_op_depth; })
          .scopes({at::RecordScope::FUNCTION}));
  run();
  at::removeCallback(handle);
  return {g_ops[0], g_ops[1]};
}
// Device time per event name (ns) and calls, over the events Kineto recorded while `run` ran: kernels,
// copies and memsets on CUDA; ops on CPU.
struct NameTotals {
  std::map<std::string, std::pair<double, int64_t>> by_name;
};
template <class F>
NameTotals profile_device_time(const at::Device& device, F&& run) {
  namespace prof = torch::profiler::impl;
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  const std::set<prof::ActivityType> activities{device.is_cuda() ? prof::ActivityType::CUDA : prof::ActivityType::CPU};
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  run();
  synchronize(device);
  const std::unique_ptr<torch::autograd::profiler::ProfilerResult> result = torch::autograd::profiler::disableProfiler();
  NameTotals totals;
  const c10::DeviceType want = device.is_cuda() ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  for (const auto& e : result->events()) {
    if (e.deviceType() != want) continue;
    auto& t = totals.by_name[e.name()];
    t.first += static_cast<double>(e.durationNs());
    t.second += 1;
  }
  return totals;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out;
}

// The JSON fields of --kernel-profile for one batch: the per-step difference of two profiled runs.
std::string kernel_profile_json(const NameTotals& a, const NameTotals& b, double steps, int64_t top) {
  struct Row {
    std::string name;
    double us, calls;
  };
  std::vector<Row> rows;
  double busy_us = 0;
  for (const auto& [name, t] : b.by_name) {
    const auto it = a.by_name.find(name);
    const double ns = t.first - (it == a.by_name.end() ? 0.0 : it->second.first);
    const double calls = static_cast<double>(t.second - (it == a.by_name.end() ? 0 : it->second.second));
    if (calls <= 0) continue;  // launched by prefill / capture only
    rows.push_back({name, ns / 1e3 / steps, calls / steps});
    busy_us += ns / 1e3 / steps;
  }
  std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) { return x.us > y.us; });
  std::string out = ", \"device_busy_us_per_step\": " + std::to_string(busy_us) + ", \"kernels\": [";
  for (size_t i = 0; i < rows.size() && static_cast<int64_t>(i) < top; ++i) {
    const std::string name = rows[i].name.size() > 160 ? rows[i].name.substr(0, 160) : rows[i].name;
    out += std::string(i ? ", " : "") + "{\"name\": \"" + json_escape(name) + "\", \"us_per_step\": " +
           std::to_string(rows[i].us) + ", \"calls_per_step\": " + std::to_string(rows[i].calls) + "}";
  }
  return out + "]";
}
}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, device = "cpu", dtype, batches = "1,8,32", decode = "auto";
  int64_t prompt_len = 64, new_tokens = 128, threads = 0, repeats = 3, stop_every = 0;
  double temperature = 1.0;
  bool compact = true;
  bool count_ops = false;
  bool profile_steps = false;
  int64_t kernel_profile = 0;
  bool fused_attention = false;
  bool lookahead = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--model") model_dir = next();
    else if (a == "--batch") batches = next();
    else if (a == "--prompt-len") prompt_len = std::stoll(next());
    else if (a == "--new-tokens") new_tokens = std::stoll(next());
    else if (a == "--threads") threads = std::stoll(next());
    else if (a == "--device") device = next();
    else if (a == "--dtype") dtype = next();
    else if (a == "--repeats") repeats = std::stoll(next());
    else if (a == "--temperature") temperature = std::stod(next());
    else if (a == "--stop-every") stop_every = std::stoll(next());
    else if (a == "--no-compact") compact = false;
    else if (a == "--decode") decode = next();
    else if (a == "--count-ops") count_ops = true;
    else if (a == "--profile-steps") profile_steps = true;
    else if (a == "--kernel-profile") kernel_profile = std::stoll(next());
    else if (a == "--fused-attention") fused_attention = true;
    else if (a == "--no-lookahead") lookahead = false;
    else { std::fprintf(stderr, "unknown argument %s\n", a.c_str()); return 2; }
  }
  if (model_dir.empty()) { std::fprintf(stderr, "--model DIR is required\n"); return 2; }
  try {
    if (threads > 0) at::set_num_threads(static_cast<int>(threads));
    LoadOptions load;
    load.device = at::Device(device);
    if (!dtype.empty()) load.dtype = parse_model_dtype(dtype);
    Transformer model = load_hf_model(model_dir, load);
    model.mutable_config().eos_token_ids.clear();  // every sample runs to its budget (or a stop id)
    EngineOptions opts;
    opts.compact = compact;
    opts.decode_steps = parse_decode_steps(decode);
    opts.profile_steps = profile_steps;
    opts.fused_decode_attention = fused_attention;
    opts.lookahead = lookahead;
    GenerationEngine engine(model, nullptr, opts);
    const int64_t V = model.config().vocab_size;
    for (const std::string& bs : split(batches, ',')) {
      const int64_t B = std::stoll(bs);
      at::Generator gen = at::detail::createCPUGenerator(1234 + B);
      const at::Tensor ids = at::randint(3, V, {B, prompt_len}, gen, at::kLong);  // [B, prompt_len]
      std::vector<std::vector<int64_t>> prompts(B);
      for (int64_t b = 0; b < B; ++b) prompts[b].assign(ids[b].data_ptr<int64_t>(), ids[b].data_ptr<int64_t>() + prompt_len);
      SamplingParams p;
      p.temperature = temperature;
      p.max_new_tokens = new_tokens;
      if (stop_every > 0) {
        for (int64_t v = stop_every; v < V; v += stop_every) p.stop_token_ids.push_back(v);
      }
      double best = 1e30;
      GenerationStats stats;
      engine.generate(prompts, [&] { SamplingParams w = p; w.max_new_tokens = 4; return w; }());  // warm-up
      for (int64_t r = 0; r < repeats; ++r) {
        p.seed = static_cast<uint64_t>(r);
        synchronize(load.device);
        const auto t0 = std::chrono::steady_clock::now();
        engine.generate(prompts, p);
        synchronize(load.device);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s < best) { best = s; stats = engine.last_stats(); }
      }
      const auto per_step_us = [&](double seconds) {
        return stats.decode_steps > 0 ? 1e6 * seconds / static_cast<double>(stats.decode_steps) : 0.0;
      };
      // One steady decode step's share of a measurement: `measure(run)` around a generate() of
      // new-tokens / 2 and one of new-tokens; their difference over the decode steps between them
      // (prefill, warm-up and graph captures cancel out). Returns (half, full, steps).
      const auto steady_step = [&](auto&& measure) {
        SamplingParams half = p, full = p;
        half.max_new_tokens = std::max<int64_t>(1, new_tokens / 2);
        full.max_new_tokens = new_tokens;
        auto a = measure([&] { engine.generate(prompts, half); });
        const int64_t steps_a = engine.last_stats().decode_steps;
        auto b = measure([&] { engine.generate(prompts, full); });
        const double steps = static_cast<double>(engine.last_stats().decode_steps - steps_a);
        return std::make_tuple(std::move(a), std::move(b), steps);
      };
      double ops_per_step = -1, compute_ops_per_step = -1;
      if (count_ops) {
        const auto [a, b, steps] = steady_step([](auto&& run) { return count_top_level_ops(run); });
        if (steps > 0) {
          ops_per_step = static_cast<double>(b.first - a.first) / steps;
          compute_ops_per_step = static_cast<double>(b.second - a.second) / steps;
        }
      }
      std::string kernels_json;
      if (kernel_profile > 0) {
        const auto [a, b, steps] = steady_step([&](auto&& run) { return profile_device_time(load.device, run); });
        if (steps > 0) kernels_json = kernel_profile_json(a, b, steps, kernel_profile);
      }
      std::printf("{\"batch\": %lld, \"prompt_len\": %lld, \"new_tokens\": %lld, \"threads\": %d, \"compact\": %s, "
                  "\"seconds\": %.4f, \"generated_tokens\": %lld, \"tokens_per_s\": %.1f, \"prefill_s\": %.4f, "
                  "\"decode_s\": %.4f, \"row_steps\": %lld, \"compactions\": %lld, \"decode\": \"%s\", "
                  "\"fused_attention\": %s, \"lookahead\": %s, \"static_steps\": %lld, \"graph_captures\": %lld, \"graph_replays\": %lld, \"ops_per_step\": %.1f, "
                  "\"compute_ops_per_step\": %.1f, \"decode_steps\": %lld, \"step_forward_us\": %.1f, "
                  "\"step_sample_us\": %.1f, \"step_host_us\": %.1f%s}\n",
                  static_cast<long long>(B), static_cast<long long>(prompt_len), static_cast<long long>(new_tokens),
                  at::get_num_threads(), compact ? "true" : "false", best, static_cast<long long>(stats.generated_tokens),
                  stats.generated_tokens / best, stats.prefill_seconds, stats.decode_seconds,
                  static_cast<long long>(stats.row_steps), static_cast<long long>(stats.compactions),
                  decode_steps_name(opts.decode_steps), fused_attention ? "true" : "false", lookahead ? "true" : "false",
                  static_cast<long long>(stats.static_steps),
                  static_cast<long long>(stats.graph_captures), static_cast<long long>(stats.graph_replays), ops_per_step,
                  compute_ops_per_step, static_cast<long long>(stats.decode_steps),
                  per_step_us(stats.step_forward_seconds), per_step_us(stats.step_sample_seconds),
                  per_step_us(stats.step_host_seconds), kernels_json.c_str());
      std::fflush(stdout);
    }
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
