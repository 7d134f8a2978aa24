// The quickstart arithmetic generator: answers checked by evaluating the prompt independently,
// determinism, difficulty flags, the two-attempt (self-correction) and verification examples, files
// that stay byte-identical without the newer flags, and `scorch make-data`.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "config/config.h"
#include "data/arith_task.h"

namespace {

using scorch::data::ArithOptions;
using scorch::data::make_arith_example;

// Left-to-right evaluation of "a+b-c..." (the task's documented semantics), written independently.
int64_t evaluate(const std::string& expr, int* n_ops = nullptr, int64_t* max_operand = nullptr) {
  std::regex term(R"(([+-]?)(\d+))");
  int64_t value = 0;
  int ops = -1;
  int64_t largest = 0;
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), term); it != std::sregex_iterator(); ++it) {
    const int64_t x = std::stoll((*it)[2]);
    largest = std::max(largest, x);
    value = ((*it)[1] == "-") ? value - x : value + x;
    ++ops;
  }
  if (n_ops) *n_ops = ops;
  if (max_operand) *max_operand = largest;
  return value;
}

std::string expression_of(const std::string& prompt) {
  std::smatch m;
  EXPECT_TRUE(std::regex_match(prompt, m, std::regex(R"(Compute ([0-9+-]+)\.)"))) << prompt;
  return m[1];
}

std::string boxed(const std::string& completion) {
  std::smatch m;
  EXPECT_TRUE(std::regex_search(completion, m, std::regex(R"(The answer is \\boxed\{(-?\d+)\}\.$)"))) << completion;
  return m[1];
}

// Every "a op b=c." step of a worked solution; returns how many steps are wrong.
int wrong_steps(const std::string& completion, int* steps = nullptr) {
  std::regex step(R"((\d+)([+-])(\d+)=(-?\d+)\. )");
  int wrong = 0, n = 0;
  for (auto it = std::sregex_iterator(completion.begin(), completion.end(), step); it != std::sregex_iterator(); ++it) {
    const int64_t a = std::stoll((*it)[1]), b = std::stoll((*it)[3]), c = std::stoll((*it)[4]);
    wrong += ((*it)[2] == "+" ? a + b : a - b) != c;
    ++n;
  }
  if (steps) *steps = n;
  return wrong;
}

TEST(ArithTask, AnswersAndEveryWorkedStepAreCorrect) {
  ArithOptions o;
  for (int64_t i = 0; i < 500; ++i) {
    const auto ex = make_arith_example(123, i, o);
    const std::string prompt = ex["prompt"], completion = ex["completion"], answer = ex["answer"];
    const int64_t expected = evaluate(expression_of(prompt));
    EXPECT_EQ(answer, std::to_string(expected)) << prompt;
    EXPECT_EQ(boxed(completion), answer);
    int steps = 0;
    EXPECT_EQ(wrong_steps(completion, &steps), 0) << completion;
    int n_ops = 0;
    evaluate(expression_of(prompt), &n_ops);
    EXPECT_EQ(steps, n_ops) << completion;
  }
}

TEST(ArithTask, DifficultyFlagsBoundOperatorsAndOperandsAndValuesStayNonNegative) {
  ArithOptions o;
  o.min_ops = 3;
  o.max_ops = 5;
  o.max_operand = 999;
  int seen_ops[6] = {0};
  bool carried = false;
  for (int64_t i = 0; i < 400; ++i) {
    const auto ex = make_arith_example(7, i, o);
    int n_ops = 0;
    int64_t largest = 0;
    const std::string expr = expression_of(ex["prompt"]);
    evaluate(expr, &n_ops, &largest);
    ASSERT_GE(n_ops, 3);
    ASSERT_LE(n_ops, 5);
    ++seen_ops[n_ops];
    EXPECT_LE(largest, 999);
    EXPECT_EQ(std::string(ex["completion"]).find("=-"), std::string::npos) << ex["completion"];
    // A carry: some step's units digits add to 10 or more.
    const std::string c = ex["completion"];
    const std::regex addition(R"((\d+)\+(\d+)=)");
    for (auto it = std::sregex_iterator(c.begin(), c.end(), addition); it != std::sregex_iterator(); ++it) {
      carried |= (std::stoll((*it)[1]) % 10 + std::stoll((*it)[2]) % 10) >= 10;
    }
  }
  EXPECT_GT(seen_ops[3], 0);
  EXPECT_GT(seen_ops[4], 0);
  EXPECT_GT(seen_ops[5], 0);
  EXPECT_TRUE(carried);
}

TEST(ArithTask, SameSeedSameExamplesAndExampleIDependsOnlyOnSeedAndI) {
  ArithOptions o;
  EXPECT_EQ(make_arith_example(5, 17, o).dump(), make_arith_example(5, 17, o).dump());
  int differ = 0;
  for (int64_t i = 0; i < 50; ++i) differ += make_arith_example(5, i, o).dump() != make_arith_example(6, i, o).dump();
  EXPECT_GT(differ, 45);
}

// Two-attempt and verification examples alike: user, assistant, user, assistant.
template <typename Json>
void expect_four_alternating_turns(const Json& m) {
  ASSERT_EQ(m.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(m[i]["role"], i % 2 == 0 ? "user" : "assistant") << i;
}

TEST(ArithTask, CorrectionExamplesHaveTheInstructionAWrongFirstAttemptMaskedAndACorrectSecond) {
  ArithOptions o;
  o.correction_percent = 40;
  int two_attempt = 0, wrong_first = 0;
  const int n = 1000;
  for (int64_t i = 0; i < n; ++i) {
    const auto ex = make_arith_example(11, i, o);
    if (!ex.contains("messages")) continue;
    ++two_attempt;
    const auto& m = ex["messages"];
    ASSERT_NO_FATAL_FAILURE(expect_four_alternating_turns(m));
    // ALGORITHMS.md §7's instruction, verbatim.
    EXPECT_EQ(m[2]["content"],
              "There might be an error in the solution above because of lack of understanding of the question. "
              "Please correct the error, if any, and rewrite the solution.");
    const std::string answer = ex["answer"];
    EXPECT_EQ(answer, std::to_string(evaluate(expression_of(m[0]["content"]))));
    EXPECT_EQ(boxed(m[3]["content"]), answer);
    EXPECT_EQ(wrong_steps(m[3]["content"]), 0);
    const std::string first = m[1]["content"];
    const bool first_right = boxed(first) == answer;
    // A wrong first attempt has exactly one wrong step and is kept out of the loss.
    EXPECT_EQ(m[1]["train"].get<bool>(), first_right) << first;
    if (!first_right) {
      ++wrong_first;
      EXPECT_EQ(wrong_steps(first), 1) << first;
      EXPECT_EQ(first.find("=-"), std::string::npos) << first;
    }
  }
  EXPECT_NEAR(two_attempt, 0.40 * n, 60);
  EXPECT_NEAR(wrong_first, 0.75 * two_attempt, 45);
}

TEST(ArithTask, CorrectionFirstRightSetsTheShareOfRightFirstAttempts) {
  ArithOptions o;
  o.correction_percent = 100;
  for (int64_t p : {0, 60, 100}) {
    o.correction_first_right = p;
    int right = 0;
    const int n = 800;
    for (int64_t i = 0; i < n; ++i) {
      const auto ex = make_arith_example(4, i, o);
      const auto& m = ex["messages"];
      const bool first_right = boxed(m[1]["content"]) == ex["answer"].get<std::string>();
      right += first_right;
      EXPECT_EQ(m[1]["train"].get<bool>(), first_right);
    }
    // Binomial(800, p): standard deviation <= 14.1; 4 sigma.
    EXPECT_NEAR(right, p / 100.0 * n, 57) << "P = " << p;
  }
  // (The default, -1, keeps the historical 3-in-4 wrong first attempts: the test above.)
  o.correction_first_right = 101;
  EXPECT_THROW(scorch::data::validate(o), scorch::UserError);
}

TEST(ArithTask, BadOptionsAreUserErrorsNamingTheFlag) {
  ArithOptions o;
  o.min_ops = 3;
  o.max_ops = 2;
  try {
    scorch::data::validate(o);
    FAIL();
  } catch (const scorch::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--max-ops"), std::string::npos);
  }
  o = ArithOptions{};
  o.correction_percent = 101;
  EXPECT_THROW(scorch::data::validate(o), scorch::UserError);
}

// FNV-1a of the JSONL text examples 0..n-1 make (each dump and a newline, as write_arith_jsonl).
uint64_t file_hash(uint64_t seed, int64_t n, const ArithOptions& o) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t i = 0; i < n; ++i) {
    for (const char ch : make_arith_example(seed, i, o).dump() + "\n") {
      h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001b3ULL;
    }
  }
  return h;
}

// The hashes are of files `scorch make-data` wrote before verification examples and the text flags
// existed (same arguments): new options at their defaults must not move a byte.
TEST(ArithTask, FilesWithoutTheNewFlagsAreByteIdenticalToEarlierVersions) {
  ArithOptions plain;
  EXPECT_EQ(file_hash(9, 300, plain), 0xff3ec100c5a1c33bULL);
  EXPECT_EQ(make_arith_example(9, 0, plain).dump(),
            R"({"prompt":"Compute 85-34+15.","completion":"85-34=51. 51+15=66. The answer is \\boxed{66}.","answer":"66"})");
  ArithOptions correction;
  correction.correction_percent = 30;
  EXPECT_EQ(file_hash(9, 300, correction), 0x9f30a8eeeac2e8c7ULL);
  EXPECT_EQ(make_arith_example(9, 1, correction).dump(),
            R"({"messages":[{"role":"user","content":"Compute 5+67-10+66."},)"
            R"({"role":"assistant","content":"5+67=71. 71-10=61. 61+66=127. The answer is \\boxed{127}.","train":false},)"
            R"({"role":"user","content":"There might be an error in the solution above because of lack of understanding )"
            R"(of the question. Please correct the error, if any, and rewrite the solution."},)"
            R"({"role":"assistant","content":"5+67=72. 72-10=62. 62+66=128. The answer is \\boxed{128}."}],"answer":"128"})");
  ArithOptions all_correction;
  all_correction.correction_percent = 100;
  all_correction.correction_first_right = 60;
  all_correction.max_ops = 5;
  EXPECT_EQ(file_hash(3, 300, all_correction), 0xb7eced78fb1818fbULL);
}

TEST(ArithTask, VerificationExamplesShowARightOrOneStepWrongSolutionAndAnswerYesOrNo) {
  ArithOptions o;
  o.verification_percent = 30;
  int verification = 0, yes = 0;
  const int n = 1000;
  for (int64_t i = 0; i < n; ++i) {
    const auto ex = make_arith_example(21, i, o);
    if (!ex.contains("messages")) continue;
    ++verification;
    const auto& m = ex["messages"];
    ASSERT_NO_FATAL_FAILURE(expect_four_alternating_turns(m));
    // The self_verify reward's default question (rewards/self_judge.cpp), verbatim.
    EXPECT_EQ(m[2]["content"], "Is this solution correct? Answer Yes or No.");
    // The shown solution is context only; the Yes / No is what SFT learns.
    EXPECT_FALSE(m[1]["train"].get<bool>());
    EXPECT_FALSE(m[3].contains("train"));
    const std::string answer = ex["answer"], shown = m[1]["content"], reply = m[3]["content"];
    EXPECT_EQ(answer, std::to_string(evaluate(expression_of(m[0]["content"]))));
    int steps = 0;
    const int wrong = wrong_steps(shown, &steps);
    int n_ops = 0;
    evaluate(expression_of(m[0]["content"]), &n_ops);
    EXPECT_EQ(steps, n_ops) << shown;
    if (reply == "Yes") {
      ++yes;
      EXPECT_EQ(wrong, 0) << shown;
      EXPECT_EQ(boxed(shown), answer);
    } else {
      EXPECT_EQ(reply, "No");
      // The correction examples' error: one step off, carried to a wrong answer, never below zero.
      EXPECT_EQ(wrong, 1) << shown;
      EXPECT_NE(boxed(shown), answer) << shown;
      EXPECT_EQ(shown.find("=-"), std::string::npos) << shown;
    }
  }
  // Binomial(1000, 0.3): sd 14.5; Binomial(~300, 0.5): sd 8.7; about 4 sigma each.
  EXPECT_NEAR(verification, 0.30 * n, 60);
  EXPECT_NEAR(yes, 0.5 * verification, 35);
  // Example 0 of seed 9 is "Compute 85-34+15." (the byte-identity test above) whatever its kind.
  o.verification_percent = 100;
  const auto ex = make_arith_example(9, 0, o);
  EXPECT_EQ(ex["messages"][0]["content"], "Compute 85-34+15.");
  EXPECT_EQ(ex["answer"], "66");
  // By hand: 43+43+91 = 177; the shown solution's second step is one off (86+91=178), so "No".
  const auto no = make_arith_example(9, 2, o)["messages"];
  EXPECT_EQ(no[0]["content"], "Compute 43+43+91.");
  EXPECT_EQ(no[1]["content"], "43+43=86. 86+91=178. The answer is \\boxed{178}.");
  EXPECT_EQ(no[3]["content"], "No");
}

TEST(ArithTask, VerificationExamplesReplacePlainOnesAndLeaveTwoAttemptExamplesAsTheyWere) {
  ArithOptions before, after;
  before.correction_percent = after.correction_percent = 40;
  after.verification_percent = 35;
  int verification = 0;
  for (int64_t i = 0; i < 400; ++i) {
    const auto a = make_arith_example(8, i, before), b = make_arith_example(8, i, after);
    if (a.contains("messages")) {
      EXPECT_EQ(a.dump(), b.dump()) << "two-attempt example " << i << " changed";
    } else if (b.contains("messages")) {
      ++verification;
      EXPECT_EQ(b["messages"][0]["content"], a["prompt"]);  // the same problem, now to be judged
      EXPECT_EQ(b["answer"], a["answer"]);
      EXPECT_EQ(b["messages"][2]["content"], "Is this solution correct? Answer Yes or No.");
    } else {
      EXPECT_EQ(a.dump(), b.dump());
    }
  }
  EXPECT_NEAR(verification, 0.35 * 400, 40);
}

TEST(ArithTask, CorrectionInstructionAndVerificationQuestionAreTheUserTurnsTheyName) {
  ArithOptions o;
  o.correction_percent = 50;
  o.verification_percent = 50;
  o.correction_instruction = "Check your work and try again.";
  o.verification_question = "Right or wrong?";
  int corrections = 0, verifications = 0;
  for (int64_t i = 0; i < 200; ++i) {
    const auto ex = make_arith_example(2, i, o);
    ASSERT_TRUE(ex.contains("messages"));  // 50 + 50: every example is a conversation
    const auto& m = ex["messages"];
    const std::string reply = m[3]["content"];
    if (reply == "Yes" || reply == "No") {
      ++verifications;
      EXPECT_EQ(m[2]["content"], "Right or wrong?");
    } else {
      ++corrections;
      EXPECT_EQ(m[2]["content"], "Check your work and try again.");
    }
  }
  EXPECT_GT(corrections, 60);
  EXPECT_GT(verifications, 60);
}

TEST(ArithTask, BadVerificationSharesAndEmptyTextsAreUserErrorsNamingTheFlags) {
  const auto message = [](const ArithOptions& o) -> std::string {
    try {
      scorch::data::validate(o);
    } catch (const scorch::UserError& e) {
      return e.what();
    }
    return "";
  };
  ArithOptions o;
  o.verification_percent = 101;
  EXPECT_NE(message(o).find("--with-verification must be a percentage in [0, 100] (got 101)"), std::string::npos) << message(o);
  o.verification_percent = -1;
  EXPECT_NE(message(o).find("--with-verification"), std::string::npos);
  o.verification_percent = 61;
  o.correction_percent = 40;
  EXPECT_NE(message(o).find("--with-correction (40) + --with-verification (61) must be <= 100"), std::string::npos) << message(o);
  o.verification_percent = 60;
  EXPECT_EQ(message(o), "");  // 40 + 60 = 100 is allowed
  o = ArithOptions{};
  o.correction_instruction = "";
  EXPECT_NE(message(o).find("--correction-instruction is empty"), std::string::npos) << message(o);
  o.correction_instruction = " \n";
  EXPECT_NE(message(o).find("--correction-instruction is empty"), std::string::npos);
  o = ArithOptions{};
  o.verification_question = "";
  EXPECT_NE(message(o).find("--verification-question is empty"), std::string::npos) << message(o);
  EXPECT_EQ(message(ArithOptions{}), "");
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int run(const std::string& args) {
  const int status = std::system((std::string(SCORCH_BIN) + " " + args + " 2>/dev/null").c_str());
  return WEXITSTATUS(status);
}

TEST(ArithTask, MakeDataCommandIsDeterministicPrefixStableAndRejectsBadFlags) {
  const auto dir = std::filesystem::temp_directory_path() / ("scorch_make_data_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string a = (dir / "a.jsonl").string(), b = (dir / "b.jsonl").string(), c = (dir / "c.jsonl").string();
  ASSERT_EQ(run("make-data --task arith --n 200 --seed 9 --out " + a + " --with-correction 10"), 0);
  ASSERT_EQ(run("make-data --task arith --n 200 --seed 9 --out " + b + " --with-correction 10"), 0);
  ASSERT_EQ(run("make-data --task arith --n 50 --seed 9 --out " + c + " --with-correction 10"), 0);
  const std::string full = read(a);
  EXPECT_EQ(full, read(b));
  EXPECT_EQ(full.substr(0, read(c).size()), read(c));
  int lines = 0;
  std::istringstream in(full);
  for (std::string line; std::getline(in, line); ++lines) {
    const auto ex = nlohmann::json::parse(line);
    EXPECT_TRUE(ex.contains("answer"));
  }
  EXPECT_EQ(lines, 200);
  EXPECT_EQ(run("make-data --task arith --n 10 --seed 9 --out " + c + " --min-ops 0"), 2);
  EXPECT_EQ(run("make-data --task algebra --n 10 --seed 9 --out " + c), 2);
  EXPECT_EQ(run("make-data --task arith --n 0 --seed 9 --out " + c), 2);
  scorch::fs::remove_all(dir.string());
}

TEST(ArithTask, MakeDataVerificationAndTextFlagsWriteTheirTurnsAndRejectBadValues) {
  const auto dir = std::filesystem::temp_directory_path() / ("scorch_make_data_v_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string a = (dir / "a.jsonl").string(), bad = (dir / "bad.jsonl").string();
  ASSERT_EQ(run("make-data --task arith --n 100 --seed 4 --out " + a +
                " --with-correction 50 --with-verification 50 --correction-instruction 'Try again.'"
                " --verification-question 'Is it right?'"),
            0);
  int corrections = 0, verifications = 0;
  std::istringstream in(read(a));
  for (std::string line; std::getline(in, line);) {
    const auto m = nlohmann::json::parse(line)["messages"];
    const std::string reply = m[3]["content"];
    const bool verify = reply == "Yes" || reply == "No";
    verifications += verify, corrections += !verify;
    EXPECT_EQ(m[2]["content"], verify ? "Is it right?" : "Try again.");
  }
  EXPECT_EQ(corrections + verifications, 100);
  EXPECT_GT(verifications, 25);
  EXPECT_GT(corrections, 25);
  const std::string base = "make-data --task arith --n 10 --seed 4 --out " + bad;
  EXPECT_EQ(run(base + " --with-verification 101"), 2);
  EXPECT_EQ(run(base + " --with-correction 60 --with-verification 41"), 2);
  EXPECT_EQ(run(base + " --with-correction 10 --correction-instruction ''"), 2);
  EXPECT_EQ(run(base + " --with-verification 10 --verification-question ''"), 2);
  // A flag that shapes one kind of example, given without any example of that kind, would do
  // nothing: refused rather than accepted and ignored.
  EXPECT_EQ(run(base + " --correction-instruction 'Try again.'"), 2);
  EXPECT_EQ(run(base + " --correction-first-right 50"), 2);
  EXPECT_EQ(run(base + " --with-correction 10 --verification-question 'Is it right?'"), 2);
  EXPECT_EQ(run(base + " --with-verification 10 --correction-instruction 'Try again.'"), 2);
  EXPECT_FALSE(std::filesystem::exists(bad));
  scorch::fs::remove_all(dir.string());
}

// The correction instruction is written twice (config/ cannot include data/): SCoRe's default
// `score.correction_instruction` and the text make-data puts before the second attempt must agree,
// or a model SFT-ed on make-data's traces meets another instruction in SCoRe and evaluation.
TEST(ArithTask, TheCorrectionInstructionIsScoresDefault) {
  EXPECT_EQ(std::string(scorch::data::kCorrectionInstruction), scorch::ScoreSection{}.correction_instruction);
  EXPECT_NE(std::string(scorch::data::kCorrectionInstruction).find("correct the error"), std::string::npos);
}

}  // namespace
