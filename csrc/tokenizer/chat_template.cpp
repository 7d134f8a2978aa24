// Token-level chat templates (see chat_template.h for the renderings and the append-only rule).
// Each template is a few lines in append() / assistant_header() / assistant_separator(); nothing
// here re-encodes text that another part already encoded.
#include "tokenizer/chat_template.h"

#include <algorithm>
#include <cctype>

#include "common/error.h"
#include "common/strings.h"
#include "tokenizer/tokenizer.h"

namespace scorch {

std::vector<std::string> chat_template_names() { return {"chatml", "llama-2", "plain", "none"}; }

ChatRenderer::ChatRenderer(const Tokenizer& tokenizer, const std::string& template_name)
    : tokenizer_(tokenizer), name_(template_name) {
  if (template_name == "chatml") kind_ = Kind::ChatML;
  else if (template_name == "llama-2") kind_ = Kind::Llama2;
  else if (template_name == "plain") kind_ = Kind::Plain;
  else if (template_name == "none") kind_ = Kind::None;
  else {
    const std::string near = nearest(template_name, chat_template_names());
    throw UserError("unknown chat template '" + template_name + "'" +
                    (near.empty() ? "" : " (did you mean `" + near + "`?)") +
                    "; the built-in templates are " + join_quoted(chat_template_names()));
  }
  end_of_turn_ = tokenizer.eos_id();
  if (kind_ == Kind::ChatML) {
    const int64_t im_end = tokenizer.piece_to_id("<|im_end|>");
    if (im_end >= 0) end_of_turn_ = im_end;
  }
  if (end_of_turn_ < 0) {
    throw UserError("chat template '" + template_name + "' needs an end-of-sequence token, but the tokenizer "
                    "has no EOS id. Fix: use a tokenizer.model trained with an eos piece");
  }
}

std::vector<int64_t> ChatRenderer::stop_ids() const {
  std::vector<int64_t> ids{end_of_turn_};
  for (int64_t id : tokenizer_.eos_ids()) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

void ChatRenderer::append_markup(const std::string& text, std::vector<int64_t>& ids) const {
  const std::vector<int64_t> part = tokenizer_.encode_special(text);
  ids.insert(ids.end(), part.begin(), part.end());
}

void ChatRenderer::append_text(const std::string& text, std::vector<int64_t>& ids) const {
  if (text.empty()) return;
  const std::vector<int64_t> part = tokenizer_.encode(text);
  ids.insert(ids.end(), part.begin(), part.end());
}

std::vector<int64_t> ChatRenderer::assistant_header() const {
  std::vector<int64_t> ids;
  switch (kind_) {
    case Kind::ChatML: append_markup("<|im_start|>assistant\n", ids); break;
    case Kind::Plain: append_text("Assistant: ", ids); break;
    case Kind::Llama2:  // "[/INST]" closed the user turn
    case Kind::None: break;
  }
  return ids;
}

std::vector<int64_t> ChatRenderer::assistant_separator() const {
  std::vector<int64_t> ids;
  if (kind_ == Kind::ChatML || kind_ == Kind::Plain) append_text("\n", ids);
  return ids;
}

std::vector<int64_t> ChatRenderer::render_completion(const std::string& text) const {
  std::vector<int64_t> ids = tokenizer_.encode(text);
  ids.push_back(end_of_turn_);
  return ids;
}

namespace {
std::string capitalised(std::string role) {
  if (!role.empty()) role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
  return role;
}
}  // namespace

void ChatRenderer::append(const std::vector<ChatMessage>& messages, std::string prev_role, RenderedChat& out) const {
  std::vector<int64_t>& ids = out.ids;
  const int64_t bos = tokenizer_.bos_id();
  for (const ChatMessage& m : messages) {
    if (m.role.empty()) throw UserError("a chat message has an empty role");
    TurnSpan span;
    span.role = m.role;
    span.begin = static_cast<int64_t>(ids.size());
    if (m.role == "assistant") {
      // Llama-2 after a lone system message: close the open [INST] before answering.
      if (kind_ == Kind::Llama2 && prev_role == "system") append_text(" [/INST]", ids);
      const std::vector<int64_t> header = assistant_header();
      ids.insert(ids.end(), header.begin(), header.end());
      span.target_begin = static_cast<int64_t>(ids.size());
      const std::vector<int64_t> completion = render_completion(m.content);
      ids.insert(ids.end(), completion.begin(), completion.end());
      span.target_end = static_cast<int64_t>(ids.size());
      span.trainable = m.train;
      const std::vector<int64_t> sep = assistant_separator();
      ids.insert(ids.end(), sep.begin(), sep.end());
    } else {
      switch (kind_) {
        case Kind::ChatML:
          append_markup("<|im_start|>" + m.role + "\n", ids);
          append_text(m.content, ids);
          ids.push_back(end_of_turn_);
          append_text("\n", ids);
          break;
        case Kind::Llama2:
          if (m.role == "system") {
            if (bos >= 0) ids.push_back(bos);
            append_text("[INST] <<SYS>>\n" + m.content + "\n<</SYS>>\n\n", ids);
          } else if (prev_role == "system") {
            append_text(m.content + " [/INST]", ids);
          } else {
            if (bos >= 0) ids.push_back(bos);
            append_text("[INST] " + m.content + " [/INST]", ids);
          }
          break;
        case Kind::Plain:
          append_text(capitalised(m.role) + ": " + m.content + "\n", ids);
          break;
        case Kind::None:
          append_text(m.content, ids);
          break;
      }
      span.target_begin = span.target_end = static_cast<int64_t>(ids.size());
    }
    span.end = static_cast<int64_t>(ids.size());
    out.turns.push_back(span);
    prev_role = m.role;
  }
}

RenderedChat ChatRenderer::render(const std::vector<ChatMessage>& messages) const {
  RenderedChat out;
  // Llama-2 puts <s> inside each user turn instead.
  if ((kind_ == Kind::Plain || kind_ == Kind::None) && tokenizer_.bos_id() >= 0) {
    out.ids.push_back(tokenizer_.bos_id());
  }
  append(messages, "", out);
  return out;
}

std::vector<int64_t> ChatRenderer::render_prompt(const std::vector<ChatMessage>& messages) const {
  std::vector<int64_t> ids = render(messages).ids;
  if (kind_ == Kind::Llama2 && !messages.empty() && messages.back().role == "system") append_text(" [/INST]", ids);
  const std::vector<int64_t> header = assistant_header();
  ids.insert(ids.end(), header.begin(), header.end());
  return ids;
}

std::vector<int64_t> ChatRenderer::render_continuation(const std::vector<ChatMessage>& new_messages) const {
  RenderedChat out;
  out.ids = assistant_separator();
  append(new_messages, "assistant", out);
  if (kind_ == Kind::Llama2 && !new_messages.empty() && new_messages.back().role == "system") {
    append_text(" [/INST]", out.ids);
  }
  const std::vector<int64_t> header = assistant_header();
  out.ids.insert(out.ids.end(), header.begin(), header.end());
  return out.ids;
}

}  // namespace scorch
