// scorch_bench_generate: tokens/s of GenerationEngine::generate on a HF model directory, for the
// comparison with transformers' generate() in run.py / gpu.sh (which start this program with the
// same weights and thread count). Prints one JSON object per configuration on stdout.
//
//   scorch_bench_generate --model DIR --batch 1,8,32 [--prompt-len 64 --new-tokens 128 --threads N
//     --device cpu|cuda --dtype bfloat16 --repeats 3 --temperature 1 --stop-every K --no-compact
//     --decode auto|dynamic|static|cuda_graph]
// --stop-every K: every K-th vocabulary id is a stop id, so samples end at varied lengths (the
// workload where dropping finished rows matters); without it every sample runs new-tokens tokens.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
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
}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, device = "cpu", dtype, batches = "1,8,32", decode = "auto";
  int64_t prompt_len = 64, new_tokens = 128, threads = 0, repeats = 3, stop_every = 0;
  double temperature = 1.0;
  bool compact = true;
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
      std::printf("{\"batch\": %lld, \"prompt_len\": %lld, \"new_tokens\": %lld, \"threads\": %d, \"compact\": %s, "
                  "\"seconds\": %.4f, \"generated_tokens\": %lld, \"tokens_per_s\": %.1f, \"prefill_s\": %.4f, "
                  "\"decode_s\": %.4f, \"row_steps\": %lld, \"compactions\": %lld, \"decode\": \"%s\", "
                  "\"static_steps\": %lld, \"graph_captures\": %lld, \"graph_replays\": %lld}\n",
                  static_cast<long long>(B), static_cast<long long>(prompt_len), static_cast<long long>(new_tokens),
                  at::get_num_threads(), compact ? "true" : "false", best, static_cast<long long>(stats.generated_tokens),
                  stats.generated_tokens / best, stats.prefill_seconds, stats.decode_seconds,
                  static_cast<long long>(stats.row_steps), static_cast<long long>(stats.compactions),
                  decode_steps_name(opts.decode_steps), static_cast<long long>(stats.static_steps),
                  static_cast<long long>(stats.graph_captures), static_cast<long long>(stats.graph_replays));
      std::fflush(stdout);
    }
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
