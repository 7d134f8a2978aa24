// `scorch make-data --task arith --n N --seed S --out FILE.jsonl [difficulty flags] [--with-correction K]
//   [--with-verification K]`
// Draws the quickstart's synthetic arithmetic tasks (csrc/data/arith_task.h) as JSONL, so anyone
// can make a fresh held-out set with another seed.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "data/arith_task.h"

namespace scorch::cli {
namespace {
struct MakeDataArgs {
  std::string task = "arith";
  int64_t n = 0;
  uint64_t seed = 0;
  std::string out;
  data::ArithOptions arith;
  // Flags that only shape one kind of example: given without that kind they would do nothing.
  bool first_right_given = false, instruction_given = false, question_given = false;
};

void refuse_without(bool given, int64_t percent, const char* flag, const char* needs) {
  if (given && percent == 0) {
    throw UserError(std::string(flag) + " only shapes the examples " + needs + " adds, and there are none; add " +
                    needs + " K (K > 0) or drop " + flag);
  }
}

void run_make_data(const MakeDataArgs& a) {
  if (a.task != "arith") throw UserError("--task '" + a.task + "' is unknown; the tasks are: `arith`");
  refuse_without(a.first_right_given, a.arith.correction_percent, "--correction-first-right", "--with-correction");
  refuse_without(a.instruction_given, a.arith.correction_percent, "--correction-instruction", "--with-correction");
  refuse_without(a.question_given, a.arith.verification_percent, "--verification-question", "--with-verification");
  data::write_arith_jsonl(a.out, a.n, a.seed, a.arith);
  std::fprintf(stderr, "wrote %lld %s examples (seed %llu) to %s\n", static_cast<long long>(a.n),
               a.task.c_str(), static_cast<unsigned long long>(a.seed), a.out.c_str());
}
}  // namespace

void register_make_data(CLI::App& app) {
  auto args = std::make_shared<MakeDataArgs>();
  auto* cmd = app.add_subcommand("make-data", "Write a seeded synthetic task dataset (JSONL) for the quickstart");
  cmd->add_option("--task", args->task, "Task family: arith (multi-step + and - with carries)")->capture_default_str();
  cmd->add_option("--n", args->n, "Number of examples")->required();
  cmd->add_option("--seed", args->seed, "Seed: the same seed gives the same file")->required()->check(non_negative_number);
  cmd->add_option("--out", args->out, "Output JSONL file")->check(non_empty_path)->required();
  cmd->add_option("--min-ops", args->arith.min_ops, "Fewest operators per expression")->capture_default_str();
  cmd->add_option("--max-ops", args->arith.max_ops, "Most operators per expression")->capture_default_str();
  cmd->add_option("--max-operand", args->arith.max_operand, "Largest operand")->capture_default_str();
  cmd->add_option("--with-correction", args->arith.correction_percent,
                  "Percent of two-attempt self-correction examples ({\"messages\": ...})")->capture_default_str();
  auto* first_right = cmd->add_option("--correction-first-right", args->arith.correction_first_right,
                                      "Percent of those whose first attempt is right (kept unchanged); default: 25");
  auto* instruction = cmd->add_option("--correction-instruction", args->arith.correction_instruction,
                                      "The user turn before the second attempt (default: score.correction_instruction's default)");
  cmd->add_option("--with-verification", args->arith.verification_percent,
                  "Percent of verification examples (a worked solution, half of them one step off, then Yes or No)")
      ->capture_default_str();
  auto* question = cmd->add_option("--verification-question", args->arith.verification_question,
                                   "The question before Yes / No (the default is the self_verify reward's)")
                       ->capture_default_str();
  cmd->footer("Lines: {\"prompt\",\"completion\",\"answer\"}; with --with-correction K, K% are "
              "{\"messages\":[user, assistant (first attempt), user (correction instruction), assistant], \"answer\"}; "
              "with --with-verification K, K% are {\"messages\":[user, assistant (a solution, not trained on), "
              "user (verification question), assistant (Yes or No)], \"answer\"}.");
  cmd->callback([args, first_right, instruction, question] {
    args->first_right_given = first_right->count() > 0;
    args->instruction_given = instruction->count() > 0;
    args->question_given = question->count() > 0;
    run_make_data(*args);
  });
}

}  // namespace scorch::cli
