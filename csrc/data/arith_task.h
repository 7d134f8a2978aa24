// The quickstart task family: seeded multi-step integer arithmetic with carries.
//
// A problem is a left-to-right chain of + and - over non-negative integers, e.g.
//   prompt:     "Compute 47+38-19."
//   completion: "47+38=85. 85-19=66. The answer is \boxed{66}."
//   answer:     "66"
// Every step is written out (one "a op b = c." per operator), so the model learns column addition
// with carries one step at a time; the difficulty knobs (operator count, operand size) move a tiny
// model's held-out accuracy. Intermediate results never go below zero (a subtrahend larger than the
// running value is redrawn), so the model never has to handle signs.
//
// Determinism: example i of a file depends only on (seed, i), never on n, so a larger file with the
// same seed starts with the smaller one's lines (`rng::derive(seed, {kTagGenerator, i})`).
//
// Two-attempt examples (SCoRe warm-up, ALGORITHMS.md §7): with correction_percent K, K% of the
// examples are conversations
//   user: prompt / assistant: first attempt / user: correction instruction / assistant: answer
// By default three in four first attempts are wrong (one step off by a carry-like error,
// propagated to the end) and marked `"train": false` so SFT does not learn the error; the rest are
// correct first attempts repeated unchanged, so the model also learns that a right answer survives
// the check. correction_first_right = P sets that share to P% instead (a model whose own first
// attempts are mostly right should see mostly right first attempts kept; see README, SCoRe).
//
// Verification examples (the self_verify reward's format, rewards/self_judge.cpp): with
// verification_percent K, K% of the examples are conversations
//   user: prompt / assistant: a worked solution (train: false) / user: question / assistant: Yes|No
// Half of the shown solutions (drawn per example) are right ("Yes"); the rest carry the correction
// examples' error (one step off, propagated to the end; "No"). One roll of the example's generator
// picks its kind (two-attempt below correction_percent, verification below correction_percent +
// verification_percent), so adding verification examples leaves every two-attempt example as it
// was, and a file with verification_percent 0 is the file this generator always wrote.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace scorch::data {

// ALGORITHMS.md §7's fixed correction instruction (the same text as config ScoreSection's default).
extern const char* const kCorrectionInstruction;
// The verification question; also the self_verify reward's default `question`, so a model trained
// on verification examples is asked the question it learned to answer.
extern const char* const kVerificationQuestion;

struct ArithOptions {
  int64_t min_ops = 2;         // operators per expression (>= 1)
  int64_t max_ops = 3;         // >= min_ops
  int64_t max_operand = 99;    // operands are drawn uniformly in [1, max_operand] (>= 1)
  int64_t correction_percent = 0;  // 0..100: share of two-attempt (self-correction) examples
  int64_t correction_first_right = -1;  // 0..100: % of those whose first attempt is right; -1 = 25
                                        // (drawn as before, so default files stay byte-identical)
  int64_t verification_percent = 0;  // 0..100: share of verification examples; + correction_percent <= 100
  std::string correction_instruction = kCorrectionInstruction;  // the user turn before attempt 2 (non-empty)
  std::string verification_question = kVerificationQuestion;    // the user turn before Yes / No (non-empty)
};

struct ArithProblem {
  std::vector<int64_t> operands;  // [ops + 1]
  std::vector<char> ops;          // '+' or '-'
  int64_t answer = 0;
  std::string expression() const;  // "47+38-19"
  std::string prompt() const;      // "Compute 47+38-19."
};

// Throws UserError naming the flag when the options are out of range.
void validate(const ArithOptions& options);

ArithProblem make_arith_problem(std::mt19937_64& rng, const ArithOptions& options);

// The worked solution. With error_step >= 0, step `error_step` gets the wrong result
// `correct + error_delta` and the later steps continue from it (a consistent but wrong attempt).
std::string arith_solution(const ArithProblem& problem, int64_t error_step = -1, int64_t error_delta = 0);

// Example i of the dataset drawn with `seed`: {"prompt","completion","answer"} or, for a
// two-attempt or verification example, {"messages":[...],"answer"}.
nlohmann::ordered_json make_arith_example(uint64_t seed, int64_t index, const ArithOptions& options);

// Writes n examples as JSONL (atomically). Throws UserError on bad options or an unwritable path.
void write_arith_jsonl(const std::string& path, int64_t n, uint64_t seed, const ArithOptions& options);

}  // namespace scorch::data
