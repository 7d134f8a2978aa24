// Chat templates, rendered at the token level so multi-turn conversations are APPEND-ONLY.
//
// Every message is tokenized on its own and the ids are concatenated; the history is never
// re-tokenized. So adding a turn only appends tokens, a rollout's sampled tokens can be spliced in
// verbatim (DESIGN.md "turn 2 must see turn 1's exact tokens"), and each turn's token span is known.
// An assistant turn is three separately encoded parts:
//   header (the generation prompt)  |  completion = encode(content) + [end-of-turn id]  |  separator
// The completion part is what a model generates and what SFT trains (EOS / end-of-turn included).
//
// Built-in templates and their exact renderings (shown for a user u, an assistant a, a second user
// u2; <s> = BOS id, </s> = EOS id, the other markers are text unless noted):
//
//   chatml   "<|im_start|>user\n{u}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"
//            "<|im_start|>user\n{u2}<|im_end|>\n"          (any role r: "<|im_start|>{r}\n...")
//            No BOS. <|im_end|> is a single id: the vocabulary's "<|im_end|>" piece when it has one,
//            else EOS. Generation prompt: "<|im_start|>assistant\n".
//   llama-2  "<s>[INST] {u} [/INST]{a}</s><s>[INST] {u2} [/INST]"
//            A system message s opens the next user turn: "<s>[INST] <<SYS>>\n{s}\n<</SYS>>\n\n{u} [/INST]".
//            Generation prompt: nothing (the user turn already ends with "[/INST]").
//   plain    "<s>User: {u}\nAssistant: {a}</s>\nUser: {u2}\n"
//            (a role r other than user/assistant renders as "{R}: ...\n" with r capitalised, e.g.
//            "System: "). Generation prompt: "Assistant: ".
//   none     "<s>{u}{a}</s>{u2}"   the texts alone; BOS at the start, EOS after each assistant text.
//
// BOS is emitted only when the tokenizer has one. Because each part is encoded separately, a
// tokenizer that adds a SentencePiece dummy prefix (Llama-2's) shows one extra leading space per
// part when decoded; the quickstart tokenizer has none, so the renderings above are exact there.
//
// `auto` renders the model's own Jinja template (tokenizer_config.json "chat_template" or
// chat_template.jinja beside the tokenizer file; jinja_template.h) and keeps the same token-level
// contract: each message's text is the difference between renderings of the conversation's
// prefixes, tokenized on its own (template text with special tokens parsed, message text per
// tokenizer.parse_special). The assistant completion is its tokens up to and including the
// end-of-turn token the template writes after the content (detected once from a probe
// conversation). A template whose rendering of a prefix is not a prefix of the next rendering
// (Qwen3 drops earlier <think> blocks) is refused with an error naming it, since training on it
// would use tokens the model never sees at inference. A trailing EOS that closes a finished
// conversation (Phi-3) is not a rewrite: it belongs to the last turn only. Without a template,
// `auto` is `plain`.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace scorch {

class Tokenizer;
class JinjaTemplate;

struct ChatMessage {
  std::string role;     // "system" | "user" | "assistant" | any other role (rendered like user)
  std::string content;
  bool train = true;    // assistant only: false keeps this turn out of the SFT targets
};

// The roles a data or prompt file may use: system, user, assistant, tool. Templates render any
// other role like user, so in a file an unknown role is a typo to report, not to render.
inline bool is_known_chat_role(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant" || role == "tool";
}

// One message's tokens in a rendered conversation.
struct TurnSpan {
  std::string role;
  int64_t begin = 0, end = 0;               // [begin, end): all of the turn's tokens
  int64_t target_begin = 0, target_end = 0; // assistant: the completion tokens (content + end-of-turn);
                                            // other roles: empty (target_begin == target_end == end)
  bool trainable = false;                   // assistant turn with train == true
};

struct RenderedChat {
  std::vector<int64_t> ids;
  std::vector<TurnSpan> turns;  // one per message, in order, tiling ids except a leading BOS
};

class ChatRenderer {
 public:
  // Throws UserError for an unknown template name (listing the valid ones) or a tokenizer that
  // lacks a token the template needs (EOS). Keeps a reference to `tokenizer`.
  // `kwargs_json`: a JSON object of extra template variables (auto templates only).
  ChatRenderer(const Tokenizer& tokenizer, const std::string& template_name, const std::string& kwargs_json = "{}");
  ~ChatRenderer();

  // The whole conversation (BOS, then each message; an assistant message includes its separator).
  RenderedChat render(const std::vector<ChatMessage>& messages) const;
  // render(messages) followed by the assistant header: what generation continues from.
  std::vector<int64_t> render_prompt(const std::vector<ChatMessage>& messages) const;
  // What the assistant generates for `text`: encode(text) + end-of-turn id.
  std::vector<int64_t> render_completion(const std::string& text) const;
  // Tokens that follow a finished completion to add `new_messages` and a new generation prompt:
  //   render_prompt(h + [assistant a] + new) ==
  //   render_prompt(h) + render_completion(a) + render_continuation(new)        (as id sequences)
  // This is how multi-turn rollouts extend a conversation without re-tokenizing sampled tokens.
  std::vector<int64_t> render_continuation(const std::vector<ChatMessage>& new_messages) const;

  int64_t end_of_turn_id() const { return end_of_turn_; }
  // Token ids that end generation: end-of-turn and the tokenizer's eos_ids() (deduplicated).
  std::vector<int64_t> stop_ids() const;
  // The built-in's name, or "auto (<template file>)".
  const std::string& name() const { return name_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }

 private:
  enum class Kind { ChatML, Llama2, Plain, None, Jinja };
  struct Text {  // a rendering of the Jinja template, with the byte ranges that came from messages
    std::string text;
    std::vector<std::pair<size_t, size_t>> data;
  };
  Text render_text(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // t.text[from, to); `after`: the ids already rendered before `from` (decides `continuation`).
  std::vector<int64_t> tokens(const Text& t, size_t from, size_t to, const std::vector<int64_t>& after) const;
  size_t kept_prefix(const std::string& prev, const std::string& next) const;
  void jinja_append(const std::vector<ChatMessage>& messages, const std::string* following, RenderedChat& out,
                    size_t* last_end) const;
  [[noreturn]] void not_append_only(size_t message) const;
  // Appends `messages` to `out`, given the role of the message before them ("" at the start).
  void append(const std::vector<ChatMessage>& messages, std::string prev_role, RenderedChat& out) const;
  void append_text(const std::string& text, std::vector<int64_t>& ids) const;    // user data
  void append_markup(const std::string& text, std::vector<int64_t>& ids) const;  // template text: specials parsed
  std::vector<int64_t> assistant_header() const;
  std::vector<int64_t> assistant_separator() const;

  const Tokenizer& tokenizer_;
  std::string name_;
  Kind kind_;
  int64_t end_of_turn_ = -1;
  std::shared_ptr<JinjaTemplate> jinja_;
  std::string vars_json_;  // add_generation_prompt is set per call
  bool completion_continues_ = false;  // the assistant header ends in ordinary text (no special token)
};

// The model's own chat template beside a tokenizer file (tokenizer_config.json "chat_template",
// its "default" entry when it is a list, else chat_template.jinja): {source, file}, or {"", ""}.
std::pair<std::string, std::string> find_chat_template(const std::string& tokenizer_file);

// Names of the templates: auto, chatml, llama-2, plain, none.
std::vector<std::string> chat_template_names();

}  // namespace scorch
