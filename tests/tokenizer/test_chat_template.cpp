// Chat templates on the quickstart tokenizer: each template's exact rendering (as documented in
// chat_template.h), the append-only property of multi-turn rendering, and the turn spans.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {

using scorch::ChatMessage;
using scorch::ChatRenderer;

const std::string kModel = std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/tokenizer.model";

const scorch::Tokenizer& tok() {
  static auto t = scorch::load_tokenizer(kModel);
  return *t;
}

// Token ids shown as text, with BOS / EOS written as <s> / </s> (decode drops control tokens).
std::string show(const std::vector<int64_t>& ids) {
  std::string out;
  for (int64_t id : ids) {
    if (id == tok().bos_id()) out += "<s>";
    else if (id == tok().eos_id()) out += "</s>";
    else out += tok().decode({id});
  }
  return out;
}

const std::vector<ChatMessage> kConversation = {
    {"user", "Compute 12+30."},
    {"assistant", "12+30=42. The answer is \\boxed{42}."},
    {"user", "Why?"},
};

TEST(ChatTemplate, ChatmlRendersExactlyAsDocumented) {
  ChatRenderer r(tok(), "chatml");
  EXPECT_EQ(show(r.render(kConversation).ids),
            "<|im_start|>user\nCompute 12+30.<|im_end|>\n<|im_start|>assistant\n"
            "12+30=42. The answer is \\boxed{42}.<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n");
  EXPECT_EQ(show(r.render_prompt({kConversation[0]})), "<|im_start|>user\nCompute 12+30.<|im_end|>\n<|im_start|>assistant\n");
  // <|im_end|> is one token, and it ends the turn.
  EXPECT_EQ(r.end_of_turn_id(), tok().piece_to_id("<|im_end|>"));
  EXPECT_EQ(r.render_completion("7").back(), tok().piece_to_id("<|im_end|>"));
}

TEST(ChatTemplate, Llama2RendersExactlyAsDocumented) {
  ChatRenderer r(tok(), "llama-2");
  EXPECT_EQ(show(r.render(kConversation).ids),
            "<s>[INST] Compute 12+30. [/INST]12+30=42. The answer is \\boxed{42}.</s><s>[INST] Why? [/INST]");
  std::vector<ChatMessage> with_system = {{"system", "Be brief."}, kConversation[0], kConversation[1]};
  EXPECT_EQ(show(r.render(with_system).ids),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nCompute 12+30. [/INST]12+30=42. The answer is \\boxed{42}.</s>");
  EXPECT_EQ(r.end_of_turn_id(), tok().eos_id());
}

TEST(ChatTemplate, PlainRendersExactlyAsDocumented) {
  ChatRenderer r(tok(), "plain");
  EXPECT_EQ(show(r.render(kConversation).ids),
            "<s>User: Compute 12+30.\nAssistant: 12+30=42. The answer is \\boxed{42}.</s>\nUser: Why?\n");
  EXPECT_EQ(show(r.render_prompt({{"system", "S"}, kConversation[0]})), "<s>System: S\nUser: Compute 12+30.\nAssistant: ");
  EXPECT_EQ(show(r.render_completion("5")), "5</s>");
}

TEST(ChatTemplate, NoneRendersTheTextsAlone) {
  ChatRenderer r(tok(), "none");
  EXPECT_EQ(show(r.render(kConversation).ids), "<s>Compute 12+30.12+30=42. The answer is \\boxed{42}.</s>Why?");
  EXPECT_EQ(show(r.render_prompt({kConversation[0]})), "<s>Compute 12+30.");
}

TEST(ChatTemplate, EachMessageIsEncodedOnItsOwn) {
  // The plain template's ids are the concatenation of its separately encoded parts.
  ChatRenderer r(tok(), "plain");
  std::vector<int64_t> expected{tok().bos_id()};
  auto add = [&](const std::vector<int64_t>& part) { expected.insert(expected.end(), part.begin(), part.end()); };
  add(tok().encode("User: Compute 12+30.\n"));
  add(tok().encode("Assistant: "));
  add(tok().encode("12+30=42. The answer is \\boxed{42}."));
  expected.push_back(tok().eos_id());
  add(tok().encode("\n"));
  EXPECT_EQ(r.render({kConversation[0], kConversation[1]}).ids, expected);
}

std::vector<ChatMessage> long_conversation() {
  return {{"system", "You are a careful calculator."},
          {"user", "Compute 47+38-19."},
          {"assistant", "47+38=85. 85-19=65. The answer is \\boxed{65}."},
          {"user", "There might be an error in the solution above. Please correct it."},
          {"assistant", "47+38=85. 85-19=66. The answer is \\boxed{66}."},
          {"user", "Thanks!\n  Spaces  and\ttabs."},
          {"assistant", "You're welcome."}};
}

TEST(ChatTemplate, AddingATurnOnlyAppendsTokensForEveryTemplate) {
  const auto conv = long_conversation();
  for (const std::string& name : scorch::chat_template_names()) {
    ChatRenderer r(tok(), name);
    for (size_t k = 1; k < conv.size(); ++k) {
      const std::vector<ChatMessage> shorter(conv.begin(), conv.begin() + k);
      const std::vector<ChatMessage> longer(conv.begin(), conv.begin() + k + 1);
      const auto a = r.render(shorter).ids;
      const auto b = r.render(longer).ids;
      ASSERT_GT(b.size(), a.size()) << name << " k=" << k;
      EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin())) << name << ": turn " << k << " changed earlier tokens";
      // The generation prompt is a prefix of the rendered conversation with that assistant turn.
      if (conv[k].role == "assistant") {
        const auto prompt = r.render_prompt(shorter);
        EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), b.begin())) << name << " k=" << k;
      }
    }
  }
}

TEST(ChatTemplate, PromptPlusCompletionPlusContinuationEqualsTheLongerPrompt) {
  // How a two-turn rollout (SCoRe) extends a conversation without re-tokenizing turn 1.
  const auto conv = long_conversation();
  for (const std::string& name : scorch::chat_template_names()) {
    ChatRenderer r(tok(), name);
    const std::vector<ChatMessage> history(conv.begin(), conv.begin() + 2);  // system, user
    std::vector<int64_t> spliced = r.render_prompt(history);
    const auto completion = r.render_completion(conv[2].content);
    spliced.insert(spliced.end(), completion.begin(), completion.end());
    const auto cont = r.render_continuation({conv[3]});
    spliced.insert(spliced.end(), cont.begin(), cont.end());
    const std::vector<ChatMessage> longer(conv.begin(), conv.begin() + 4);
    EXPECT_EQ(spliced, r.render_prompt(longer)) << name;
  }
}

TEST(ChatTemplate, TurnSpansTileTheIdsAndTargetSpansAreTheAssistantCompletions) {
  auto conv = long_conversation();
  conv[2].train = false;  // a wrong first attempt kept out of the loss
  for (const std::string& name : scorch::chat_template_names()) {
    ChatRenderer r(tok(), name);
    const auto chat = r.render(conv);
    ASSERT_EQ(chat.turns.size(), conv.size());
    int64_t pos = chat.turns[0].begin;
    EXPECT_LE(pos, 1) << name;  // at most a leading BOS before the first turn
    for (size_t i = 0; i < conv.size(); ++i) {
      const auto& t = chat.turns[i];
      EXPECT_EQ(t.role, conv[i].role);
      EXPECT_EQ(t.begin, pos) << name << " turn " << i;
      EXPECT_GT(t.end, t.begin);
      pos = t.end;
      if (conv[i].role == "assistant") {
        const std::vector<int64_t> target(chat.ids.begin() + t.target_begin, chat.ids.begin() + t.target_end);
        EXPECT_EQ(target, r.render_completion(conv[i].content)) << name << " turn " << i;
        EXPECT_EQ(tok().decode(target), conv[i].content + (name == "chatml" ? "<|im_end|>" : ""));
        EXPECT_EQ(t.trainable, i != 2) << name << " turn " << i;
      } else {
        EXPECT_EQ(t.target_begin, t.target_end);
        EXPECT_FALSE(t.trainable);
      }
    }
    EXPECT_EQ(pos, static_cast<int64_t>(chat.ids.size())) << name;
  }
}

TEST(ChatTemplate, StopIdsHoldEndOfTurnAndEos) {
  ChatRenderer chatml(tok(), "chatml");
  EXPECT_EQ(chatml.stop_ids(), (std::vector<int64_t>{tok().piece_to_id("<|im_end|>"), tok().eos_id()}));
  ChatRenderer plain(tok(), "plain");
  EXPECT_EQ(plain.stop_ids(), (std::vector<int64_t>{tok().eos_id()}));
}

TEST(ChatTemplate, UnknownTemplateNameIsAUserErrorSuggestingTheNearest) {
  try {
    ChatRenderer r(tok(), "chatm");
    FAIL() << "expected UserError";
  } catch (const scorch::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("chatml"), std::string::npos) << e.what();
  }
}

}  // namespace
