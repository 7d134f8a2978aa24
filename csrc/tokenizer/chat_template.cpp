// Token-level chat templates (see chat_template.h for the renderings and the append-only rule).
// Each template is a few lines in append() / assistant_header() / assistant_separator(); nothing
// here re-encodes text that another part already encoded.
#include "tokenizer/chat_template.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "tokenizer/jinja_template.h"
#include "tokenizer/tokenizer.h"

namespace scorch {

std::vector<std::string> chat_template_names() { return {"auto", "chatml", "llama-2", "plain", "none"}; }

std::pair<std::string, std::string> find_chat_template(const std::string& tokenizer_file) {
  if (tokenizer_file.empty()) return {"", ""};
  const std::filesystem::path dir = std::filesystem::path(tokenizer_file).parent_path();
  const std::string cfg = (dir / "tokenizer_config.json").string();
  if (fs::exists(cfg)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(fs::read_file(cfg, "tokenizer config"));
    } catch (const nlohmann::json::exception& e) {
      throw UserError("'" + cfg + "' is not valid JSON: " + e.what() + ". Fix: re-save the tokenizer with transformers");
    }
    if (j.is_object() && j.contains("chat_template")) {
      const nlohmann::json& t = j["chat_template"];
      if (t.is_string()) return {t.get<std::string>(), cfg};
      if (t.is_array()) {
        for (const auto& entry : t) {
          if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
              entry["template"].is_string()) {
            return {entry["template"].get<std::string>(), cfg + " (\"default\")"};
          }
        }
      }
    }
  }
  const std::string jinja = (dir / "chat_template.jinja").string();
  if (fs::exists(jinja)) return {fs::read_file(jinja, "chat template"), jinja};
  return {"", ""};
}

ChatRenderer::~ChatRenderer() = default;

ChatRenderer::ChatRenderer(const Tokenizer& tokenizer, const std::string& template_name, const std::string& kwargs_json)
    : tokenizer_(tokenizer), name_(template_name) {
  std::pair<std::string, std::string> found;
  if (template_name == "auto") found = find_chat_template(tokenizer.source());
  if (template_name != "auto" && kwargs_json != "{}" && !kwargs_json.empty()) {
    throw UserError("tokenizer.chat_template_kwargs applies to the model's own template only (chat_template: auto), "
                    "not the built-in '" + template_name + "'. Fix: remove tokenizer.chat_template_kwargs");
  }
  if (template_name == "auto" && !found.first.empty()) {
    kind_ = Kind::Jinja;
    name_ = "auto (" + found.second + ")";
    jinja_ = std::make_shared<JinjaTemplate>(found.first, found.second);
    nlohmann::json vars = nlohmann::json::object();
    try {
      const nlohmann::json kwargs = nlohmann::json::parse(kwargs_json.empty() ? "{}" : kwargs_json);
      if (kwargs.is_object()) vars = kwargs;
    } catch (const nlohmann::json::exception&) {
      throw UserError("tokenizer.chat_template_kwargs is not a mapping of names to values");
    }
    const auto piece = [&](int64_t id) { return id >= 0 ? tokenizer.id_to_piece(id) : std::string(); };
    vars["bos_token"] = piece(tokenizer.bos_id());
    vars["eos_token"] = piece(tokenizer.eos_id());
    vars_json_ = vars.dump();
    // The end-of-turn token: what the template writes right after an assistant's content.
    end_of_turn_ = tokenizer.eos_id();
    // Some templates (Apertus, Kimi, GLM) close an assistant turn only when another message follows,
    // so a conversation that goes on after the reply is probed too.
    const std::vector<ChatMessage> probe = {{"user", "Hi", true}, {"assistant", "Hello", true}, {"user", "Bye", true}};
    const Text prompt = render_text({probe[0]}, true);
    for (size_t n : {2, 3}) {
      const Text full = render_text(std::vector<ChatMessage>(probe.begin(), probe.begin() + static_cast<std::ptrdiff_t>(n)), false);
      if (full.text.compare(0, prompt.text.size(), prompt.text) != 0) continue;
      const std::vector<int64_t> header = tokens(prompt, 0, prompt.text.size(), {});
      completion_continues_ = !header.empty() && !tokenizer.decode({header.back()}).empty();
      const std::vector<int64_t> body = tokens(full, prompt.text.size(), full.text.size(), header);
      // The reply may follow more template text (Solar's "<|content|>", GLM's "\n<think></think>\n")
      // and its first token may merge with the text before it (Reka's "assistant:" + " Hello"): the
      // end-of-turn token is the first special token once the decoded body holds the whole reply.
      std::vector<int64_t> seen;
      bool replied = false;
      for (int64_t id : body) {
        if (replied && tokenizer.decode({id}).empty()) {
          end_of_turn_ = id;
          break;
        }
        seen.push_back(id);
        replied = replied || tokenizer.decode(seen).find("Hello") != std::string::npos;
      }
      if (end_of_turn_ != tokenizer.eos_id()) break;
    }
    if (end_of_turn_ < 0) {
      throw UserError("chat template " + found.second + ": cannot tell which token ends an assistant turn (no special "
                      "token follows the content and the tokenizer has no EOS). Fix: set tokenizer.chat_template to a built-in");
    }
    return;
  }
  if (template_name == "auto") {
    kind_ = Kind::Plain;
    name_ = "plain";
  } else if (template_name == "chatml") kind_ = Kind::ChatML;
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
    case Kind::None:
    case Kind::Jinja: break;  // rendered by jinja_append
  }
  return ids;
}

std::vector<int64_t> ChatRenderer::assistant_separator() const {
  std::vector<int64_t> ids;
  if (kind_ == Kind::ChatML || kind_ == Kind::Plain) append_text("\n", ids);
  return ids;
}

std::vector<int64_t> ChatRenderer::render_completion(const std::string& text) const {
  // After a Jinja template's header the content continues its text, as in the full rendering.
  std::vector<int64_t> ids = kind_ == Kind::Jinja ? tokenizer_.encode_template(text, {{0, text.size()}}, completion_continues_)
                                                  : tokenizer_.encode(text);
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
        case Kind::Jinja:  // rendered by jinja_append
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

ChatRenderer::Text ChatRenderer::render_text(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  nlohmann::json msgs = nlohmann::json::array();
  for (const ChatMessage& m : messages) {
    if (m.role.empty()) throw UserError("a chat message has an empty role");
    msgs.push_back({{"role", m.role}, {"content", m.content}});
  }
  // Invalid UTF-8 in messages becomes U+FFFD here, as it would in the tokenizer.
  const std::string data = nlohmann::json{{"messages", msgs}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string vars = vars_json_;
  vars.insert(vars.size() - 1, std::string(vars.size() > 2 ? "," : "") + "\"add_generation_prompt\":" +
                                   (add_generation_prompt ? "true" : "false"));
  Text out;
  for (const TemplatePart& p : jinja_->render(data, vars)) {
    if (p.data) out.data.emplace_back(out.text.size(), out.text.size() + p.text.size());
    out.text += p.text;
  }
  return out;
}

std::vector<int64_t> ChatRenderer::tokens(const Text& t, size_t from, size_t to, const std::vector<int64_t>& after) const {
  if (from >= to) return {};
  std::vector<std::pair<size_t, size_t>> data;
  for (const auto& [b, e] : t.data) {
    const size_t lo = std::max(b, from), hi = std::min(e, to);
    if (lo < hi) data.emplace_back(lo - from, hi - from);
  }
  const bool continuation = !after.empty() && !tokenizer_.decode({after.back()}).empty();
  return tokenizer_.encode_template(t.text.substr(from, to - from), data, continuation);
}

void ChatRenderer::not_append_only(size_t message) const {
  throw UserError("chat template " + jinja_->origin() + " is not append-only: rendering the conversation up to message " +
                  std::to_string(message) + " changes the text of the messages before it (e.g. Qwen3 drops earlier "
                  "<think> blocks), so training on the rendering would use tokens the model never sees at inference. "
                  "Fix: use single-turn data with this template, or set tokenizer.chat_template to a built-in (chatml)");
}

// How much of `prev` the rendering `next` keeps: all of it, or all but a trailing EOS text that
// closes a finished conversation (Phi-3's template ends with eos_token unless a generation prompt
// follows); npos when `next` rewrites `prev`.
size_t ChatRenderer::kept_prefix(const std::string& prev, const std::string& next) const {
  if (next.compare(0, prev.size(), prev) == 0) return prev.size();
  const std::string eos = tokenizer_.eos_id() >= 0 ? tokenizer_.id_to_piece(tokenizer_.eos_id()) : "";
  if (!eos.empty() && prev.size() >= eos.size() && prev.compare(prev.size() - eos.size(), eos.size(), eos) == 0 &&
      next.compare(0, prev.size() - eos.size(), prev, 0, prev.size() - eos.size()) == 0) {
    return prev.size() - eos.size();
  }
  return std::string::npos;
}

// Each message's tokens = the text its rendering adds to the previous prefix's rendering.
// `following`: the text rendered after the last message (the generation prompt), or null.
void ChatRenderer::jinja_append(const std::vector<ChatMessage>& messages, const std::string* following,
                                RenderedChat& out, size_t* last_end) const {
  const size_t n = messages.size();
  std::vector<Text> texts(n);
  // A template may refuse a prefix on its own (Qwen3.5 raises "No user query found" for a lone
  // system message): such a non-assistant message has no boundary of its own, and its text goes
  // with the next message's span (its own span is empty). The whole conversation must render.
  std::vector<bool> renders(n, true);
  for (size_t k = 0; k < n; ++k) {
    const std::vector<ChatMessage> prefix(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(k) + 1);
    if (k + 1 < n && messages[k].role != "assistant") {
      try {
        texts[k] = render_text(prefix, false);
      } catch (const UserError&) {
        renders[k] = false;
      }
    } else {
      texts[k] = render_text(prefix, false);
    }
  }
  size_t start = 0;
  const Text* kept_text = nullptr;  // the last prefix rendered on its own
  for (size_t k = 0; k < n; ++k) {
    if (!renders[k]) {
      TurnSpan span;
      span.role = messages[k].role;
      span.begin = span.end = span.target_begin = span.target_end = static_cast<int64_t>(out.ids.size());
      out.turns.push_back(span);
      continue;
    }
    const Text& cur = texts[k];
    size_t after = k + 1;  // the next message whose prefix renders on its own
    while (after < n && !renders[after]) ++after;
    const std::string* next = after < n ? &texts[after].text : following;
    size_t end = next ? kept_prefix(cur.text, *next) : cur.text.size();
    if (end == std::string::npos) not_append_only(k + 1);
    TurnSpan span;
    span.role = messages[k].role;
    span.begin = static_cast<int64_t>(out.ids.size());
    if (messages[k].role == "assistant") {
      const Text gen = render_text(std::vector<ChatMessage>(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(k)), true);
      const std::string kept = kept_text ? kept_text->text.substr(0, start) : std::string();
      if (gen.text.compare(0, kept.size(), kept) == 0 && cur.text.compare(0, gen.text.size(), gen.text) != 0) {
        // DeepSeek-R1's template prompts with "<｜Assistant｜><think>\n" but renders a finished reply without it.
        const std::string prompt_tail = gen.text.substr(std::min(start, gen.text.size()));
        throw UserError("chat template " + jinja_->origin() + " is not append-only: its generation prompt ('" +
                        shorten(prompt_tail, 80) + "') is not how it renders a finished assistant message (message " +
                        std::to_string(k) + "), so training on the rendering would use tokens the model never sees at "
                        "inference. Fix: use prompt-only data (GRPO) with this template, or set "
                        "tokenizer.chat_template to a built-in (chatml)");
      }
      if (gen.text.compare(0, kept.size(), kept) != 0 || gen.text.size() > end) not_append_only(k);
      const std::vector<int64_t> header = tokens(gen, start, gen.text.size(), out.ids);
      out.ids.insert(out.ids.end(), header.begin(), header.end());
      std::vector<int64_t> body = tokens(cur, gen.text.size(), end, out.ids);
      if (std::find(body.begin(), body.end(), end_of_turn_) == body.end() && after < n) {
        // Templates that close a turn only when another message follows (Apertus, Kimi): the
        // end-of-turn token opens the next message's text; it belongs to this reply.
        const std::string eot_text = tokenizer_.id_to_piece(end_of_turn_);
        if (!eot_text.empty() && next->compare(end, eot_text.size(), eot_text) == 0) {
          end += eot_text.size();
          body = tokens(texts[after], gen.text.size(), end, out.ids);
        }
      }
      const auto eot = std::find(body.begin(), body.end(), end_of_turn_);
      if (eot == body.end()) {
        if (k + 1 == n && following == nullptr) {
          throw UserError("chat template " + jinja_->origin() + " writes no end-of-turn token ('" +
                          tokenizer_.id_to_piece(end_of_turn_) + "') after a conversation's last assistant message " +
                          "(it closes a turn only when another message follows), so training on it would never teach "
                          "the model to stop. Fix: make the template (" + jinja_->origin() + ") close every assistant turn, or "
                          "set tokenizer.chat_template to a built-in (chatml)");
        }
        throw UserError("chat template " + jinja_->origin() + ": assistant message " + std::to_string(k) +
                        " is not followed by the end-of-turn token '" + tokenizer_.id_to_piece(end_of_turn_) +
                        "'. Fix: set tokenizer.chat_template to a built-in");
      }
      span.target_begin = static_cast<int64_t>(out.ids.size());
      out.ids.insert(out.ids.end(), body.begin(), eot + 1);
      span.target_end = static_cast<int64_t>(out.ids.size());
      span.trainable = messages[k].train;
      out.ids.insert(out.ids.end(), eot + 1, body.end());
    } else {
      const std::vector<int64_t> ids = tokens(cur, start, end, out.ids);
      out.ids.insert(out.ids.end(), ids.begin(), ids.end());
      span.target_begin = span.target_end = static_cast<int64_t>(out.ids.size());
    }
    span.end = static_cast<int64_t>(out.ids.size());
    out.turns.push_back(span);
    start = end;
    kept_text = &cur;
  }
  if (last_end) *last_end = start;
}

RenderedChat ChatRenderer::render(const std::vector<ChatMessage>& messages) const {
  RenderedChat out;
  if (kind_ == Kind::Jinja) {
    jinja_append(messages, nullptr, out, nullptr);
    return out;
  }
  // Llama-2 puts <s> inside each user turn instead.
  if ((kind_ == Kind::Plain || kind_ == Kind::None) && tokenizer_.bos_id() >= 0) {
    out.ids.push_back(tokenizer_.bos_id());
  }
  append(messages, "", out);
  return out;
}

std::vector<int64_t> ChatRenderer::render_prompt(const std::vector<ChatMessage>& messages) const {
  if (kind_ == Kind::Jinja) {
    RenderedChat out;
    const Text gen = render_text(messages, true);
    size_t kept = 0;
    jinja_append(messages, &gen.text, out, &kept);
    const std::vector<int64_t> header = tokens(gen, kept, gen.text.size(), out.ids);
    out.ids.insert(out.ids.end(), header.begin(), header.end());
    return out.ids;
  }
  std::vector<int64_t> ids = render(messages).ids;
  if (kind_ == Kind::Llama2 && !messages.empty() && messages.back().role == "system") append_text(" [/INST]", ids);
  const std::vector<int64_t> header = assistant_header();
  ids.insert(ids.end(), header.begin(), header.end());
  return ids;
}

std::vector<int64_t> ChatRenderer::render_continuation(const std::vector<ChatMessage>& new_messages) const {
  if (kind_ == Kind::Jinja) {
    // What follows a finished completion in a probe conversation [user, assistant] + new_messages.
    std::vector<ChatMessage> conv = {{"user", "Hi", true}, {"assistant", "Hello", true}};
    const std::vector<int64_t> base = render_prompt({conv[0]});
    conv.insert(conv.end(), new_messages.begin(), new_messages.end());
    const std::vector<int64_t> all = render_prompt(conv);
    const std::vector<int64_t> completion = render_completion("Hello");
    const size_t cut = base.size() + completion.size();
    if (all.size() < cut || !std::equal(base.begin(), base.end(), all.begin()) ||
        !std::equal(completion.begin(), completion.end(), all.begin() + static_cast<std::ptrdiff_t>(base.size()))) {
      not_append_only(1);
    }
    return std::vector<int64_t>(all.begin() + static_cast<std::ptrdiff_t>(cut), all.end());
  }
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
