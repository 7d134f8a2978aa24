// The quickstart arithmetic generator (see arith_task.h for the task family and its guarantees).
#include "data/arith_task.h"

#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/rng.h"

namespace scorch::data {

const char* const kCorrectionInstruction =
    "There might be an error in the solution above because of lack of understanding of the "
    "question. Please correct the error, if any, and rewrite the solution.";

const char* const kVerificationQuestion = "Is this solution correct? Answer Yes or No.";

namespace {

// Uniform integer in [lo, hi] from raw engine output: the standard distributions are
// implementation-defined, and the same seed must give the same file with any standard library.
int64_t uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  return lo + static_cast<int64_t>(rng() % span);
}

int64_t apply(char op, int64_t a, int64_t b) { return op == '+' ? a + b : a - b; }

std::string boxed_answer(int64_t value) {
  return "The answer is \\boxed{" + std::to_string(value) + "}.";
}

bool is_blank(const std::string& text) {
  return text.find_first_not_of(" \t\r\n") == std::string::npos;
}

}  // namespace

std::string ArithProblem::expression() const {
  std::ostringstream out;
  out << operands[0];
  for (size_t i = 0; i < ops.size(); ++i) out << ops[i] << operands[i + 1];
  return out.str();
}

std::string ArithProblem::prompt() const { return "Compute " + expression() + "."; }

void validate(const ArithOptions& o) {
  if (o.min_ops < 1) throw UserError("--min-ops must be >= 1 (got " + std::to_string(o.min_ops) + ")");
  if (o.max_ops < o.min_ops)
    throw UserError("--max-ops (" + std::to_string(o.max_ops) + ") must be >= --min-ops (" +
                    std::to_string(o.min_ops) + ")");
  if (o.max_ops > 64) throw UserError("--max-ops must be <= 64 (got " + std::to_string(o.max_ops) + ")");
  if (o.max_operand < 1 || o.max_operand > 1000000000)
    throw UserError("--max-operand must be in [1, 1e9] (got " + std::to_string(o.max_operand) + ")");
  if (o.correction_percent < 0 || o.correction_percent > 100)
    throw UserError("--with-correction must be a percentage in [0, 100] (got " +
                    std::to_string(o.correction_percent) + ")");
  if (o.correction_first_right != -1 && (o.correction_first_right < 0 || o.correction_first_right > 100))
    throw UserError("--correction-first-right must be a percentage in [0, 100] (got " +
                    std::to_string(o.correction_first_right) + ")");
  if (o.verification_percent < 0 || o.verification_percent > 100)
    throw UserError("--with-verification must be a percentage in [0, 100] (got " +
                    std::to_string(o.verification_percent) + ")");
  if (o.correction_percent + o.verification_percent > 100)
    throw UserError("--with-correction (" + std::to_string(o.correction_percent) + ") + --with-verification (" +
                    std::to_string(o.verification_percent) +
                    ") must be <= 100: both are shares of the same examples; lower one of them");
  if (is_blank(o.correction_instruction))
    throw UserError("--correction-instruction is empty: give the text of the user turn before the second attempt, "
                    "or leave the flag out for the default instruction");
  if (is_blank(o.verification_question))
    throw UserError("--verification-question is empty: give the question the verification examples ask, "
                    "or leave the flag out for the default question");
}

ArithProblem make_arith_problem(std::mt19937_64& rng, const ArithOptions& o) {
  ArithProblem p;
  const int64_t n_ops = uniform(rng, o.min_ops, o.max_ops);
  int64_t value = uniform(rng, 1, o.max_operand);
  p.operands.push_back(value);
  for (int64_t i = 0; i < n_ops; ++i) {
    // Operands are >= 1 (a "+0" step teaches nothing). The running value stays non-negative: a
    // too-large subtrahend is redrawn in [1, value], and nothing is subtracted from 0.
    char op = (rng() & 1) ? '+' : '-';
    if (value == 0) op = '+';
    int64_t b = uniform(rng, 1, o.max_operand);
    if (op == '-' && b > value) b = uniform(rng, 1, value);
    value = apply(op, value, b);
    p.ops.push_back(op);
    p.operands.push_back(b);
  }
  p.answer = value;
  return p;
}

std::string arith_solution(const ArithProblem& p, int64_t error_step, int64_t error_delta) {
  std::ostringstream out;
  int64_t value = p.operands[0];
  for (size_t i = 0; i < p.ops.size(); ++i) {
    int64_t next = apply(p.ops[i], value, p.operands[i + 1]);
    if (static_cast<int64_t>(i) == error_step) next += error_delta;
    out << value << p.ops[i] << p.operands[i + 1] << '=' << next << ". ";
    value = next;
  }
  out << boxed_answer(value);
  return out.str();
}

namespace {

// A wrong worked solution: a carry-like slip (units or tens off by one) in one step, carried
// through to the answer, so the answer is off by the slip too.
std::string slipped_solution(std::mt19937_64& rng, const ArithProblem& p) {
  const int64_t step = uniform(rng, 0, static_cast<int64_t>(p.ops.size()) - 1);
  static const int64_t kDeltas[] = {1, -1, 10, -10};
  int64_t delta = kDeltas[uniform(rng, 0, 3)];
  // A negative slip could push a later running value below zero; the positive one never does.
  int64_t running = p.operands[0];  // the correct running value
  for (size_t i = 0; i < p.ops.size(); ++i) {
    running = apply(p.ops[i], running, p.operands[i + 1]);
    if (static_cast<int64_t>(i) >= step && running + delta < 0) delta = -delta;
  }
  return arith_solution(p, step, delta);
}

nlohmann::ordered_json conversation(const std::string& prompt, const std::string& shown, bool train_shown,
                                    const std::string& question, const std::string& reply, const std::string& answer) {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  messages.push_back({{"role", "user"}, {"content", prompt}});
  messages.push_back({{"role", "assistant"}, {"content", shown}, {"train", train_shown}});
  messages.push_back({{"role", "user"}, {"content", question}});
  messages.push_back({{"role", "assistant"}, {"content", reply}});
  return {{"messages", messages}, {"answer", answer}};
}

}  // namespace

nlohmann::ordered_json make_arith_example(uint64_t seed, int64_t index, const ArithOptions& o) {
  std::mt19937_64 rng = rng::engine(seed, {rng::kTagGenerator, static_cast<uint64_t>(index)});
  const ArithProblem p = make_arith_problem(rng, o);
  const std::string answer = std::to_string(p.answer);
  const std::string correct = arith_solution(p);
  // One roll picks the kind; the draws after it are the kind's own, so no kind shifts another's.
  const int64_t kind = uniform(rng, 0, 99);
  if (kind < o.correction_percent) {
    const bool first_is_wrong = o.correction_first_right < 0
                                    ? uniform(rng, 0, 3) != 0  // default: 3 in 4 first attempts are wrong
                                    : uniform(rng, 0, 99) >= o.correction_first_right;
    const std::string first = first_is_wrong ? slipped_solution(rng, p) : correct;
    return conversation(p.prompt(), first, !first_is_wrong, o.correction_instruction, correct, answer);
  }
  if (kind < o.correction_percent + o.verification_percent) {
    // The shown solution is never trained on: the model learns to judge it, not to write it.
    const bool shown_is_right = uniform(rng, 0, 1) == 0;
    const std::string shown = shown_is_right ? correct : slipped_solution(rng, p);
    return conversation(p.prompt(), shown, false, o.verification_question, shown_is_right ? "Yes" : "No", answer);
  }
  return {{"prompt", p.prompt()}, {"completion", correct}, {"answer", answer}};
}

void write_arith_jsonl(const std::string& path, int64_t n, uint64_t seed, const ArithOptions& o) {
  validate(o);
  constexpr int64_t kMaxExamples = int64_t{1} << 30;
  if (n < 1 || n > kMaxExamples) {
    throw UserError("--n must be in [1, " + std::to_string(kMaxExamples) + "] (got " + std::to_string(n) + ")");
  }
  // Streamed in blocks: memory stays flat whatever n is, and the file appears only when complete.
  fs::AtomicFileWriter out(path);
  std::string block;
  for (int64_t i = 0; i < n; ++i) {
    block += make_arith_example(seed, i, o).dump();
    block += '\n';
    if (block.size() > (1u << 20)) {
      out.write(block);
      block.clear();
    }
  }
  out.write(block);
  out.commit();
}

}  // namespace scorch::data
