// JSONL readers for the SFT / preference / RL-prompt formats (see dataset.h). One generic line loop
// owns the file:line reporting and the skip-and-count policy; each format only says how one JSON
// object becomes a record, throwing Malformed with what is wrong.
#include "data/dataset.h"

#include <functional>
#include <stdexcept>

#include "common/error.h"
#include "common/strings.h"
#include "common/fs.h"
#include "common/log.h"

namespace scorch::data {
namespace {

struct Malformed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const nlohmann::json& field(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) throw Malformed(std::string("missing field \"") + key + "\"");
  return *it;
}

std::string string_field(const nlohmann::json& obj, const char* key) {
  const nlohmann::json& v = field(obj, key);
  if (!v.is_string()) throw Malformed(std::string("field \"") + key + "\" must be a string, got " + v.type_name());
  return v.get<std::string>();
}

std::vector<ChatMessage> parse_messages(const nlohmann::json& v, const char* key) {
  if (!v.is_array() || v.empty()) {
    throw Malformed(std::string("field \"") + key + "\" must be a non-empty list of {\"role\", \"content\"} messages");
  }
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const nlohmann::json& m = v[i];
    const std::string where = std::string(key) + "[" + std::to_string(i) + "]";
    if (!m.is_object()) throw Malformed(where + " must be an object with \"role\" and \"content\"");
    ChatMessage msg;
    try {
      msg.role = string_field(m, "role");
      msg.content = string_field(m, "content");
    } catch (const Malformed& e) {
      throw Malformed(where + ": " + e.what());
    }
    if (!is_known_chat_role(msg.role)) {
      throw Malformed(where + ": \"role\" '" + shorten(msg.role) + "' is unknown (use system, user, assistant or tool)");
    }
    if (auto t = m.find("train"); t != m.end()) {
      if (!t->is_boolean()) throw Malformed(where + ": \"train\" must be true or false");
      msg.train = t->get<bool>();
    }
    out.push_back(std::move(msg));
  }
  return out;
}

// A prompt: a string (one user message) or a message list.
std::vector<ChatMessage> parse_prompt(const nlohmann::json& obj) {
  const nlohmann::json& p = field(obj, "prompt");
  if (p.is_string()) return {ChatMessage{"user", p.get<std::string>()}};
  if (p.is_array()) return parse_messages(p, "prompt");
  throw Malformed(std::string("field \"prompt\" must be a string or a list of messages, got ") + p.type_name());
}

// A completion: a string, or a list of assistant messages (TRL's conversational form).
std::vector<ChatMessage> parse_completion(const nlohmann::json& obj, const char* key) {
  const nlohmann::json& c = field(obj, key);
  if (c.is_string()) return {ChatMessage{"assistant", c.get<std::string>()}};
  if (c.is_array()) {
    std::vector<ChatMessage> msgs = parse_messages(c, key);
    for (const ChatMessage& m : msgs) {
      if (m.role != "assistant") throw Malformed(std::string("field \"") + key + "\" may only hold assistant messages");
    }
    return msgs;
  }
  throw Malformed(std::string("field \"") + key + "\" must be a string or a list of assistant messages, got " + c.type_name());
}

// A single assistant completion as text (preference pairs compare one completion each).
std::string completion_text(const nlohmann::json& obj, const char* key) {
  std::vector<ChatMessage> msgs = parse_completion(obj, key);
  if (msgs.size() != 1) throw Malformed(std::string("field \"") + key + "\" must hold exactly one assistant message");
  return msgs[0].content;
}

template <class Record>
Dataset<Record> read_jsonl(const std::string& path, const DatasetOptions& options, const char* what,
                           const std::function<Record(const nlohmann::json&)>& parse) {
  if (!fs::exists(path)) throw UserError(std::string(what) + " file '" + path + "' does not exist");
  if (fs::is_directory(path)) throw UserError(std::string(what) + " path '" + path + "' is a directory, not a JSONL file");
  const std::string content = fs::read_file(path, std::string(what) + " file");
  Dataset<Record> out;
  out.path = path;
  size_t start = 0;
  int64_t line_no = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    std::string line = content.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    try {
      nlohmann::json obj;
      if (json_nesting_depth(line) > kMaxJsonNesting) {
        throw Malformed("arrays and objects nest deeper than " + std::to_string(kMaxJsonNesting) + " levels");
      }
      try {
        obj = nlohmann::json::parse(line);  // a number beyond a double's range is an out_of_range error
      } catch (const nlohmann::json::exception& e) {
        throw Malformed("not valid JSON (" + shorten(e.what(), 200) + ")");
      }
      if (!obj.is_object()) throw Malformed(std::string("a line must be a JSON object, got ") + obj.type_name());
      Record r;
      try {
        r = parse(obj);
      } catch (const nlohmann::json::exception& e) {
        throw Malformed("a field has the wrong type or range (" + shorten(e.what(), 200) + ")");
      }
      r.line = line_no;
      out.records.push_back(std::move(r));
    } catch (const Malformed& e) {
      if (!options.skip_malformed) {
        throw UserError(path + ":" + std::to_string(line_no) + ": malformed " + what + " line: " + e.what() +
                        ". Fix the line, or set data.skip_malformed: true to skip and count such lines");
      }
      ++out.skipped;
    }
  }
  if (out.records.empty()) {
    throw UserError(std::string(what) + " file '" + path + "' has no usable examples" +
                    (out.skipped > 0 ? " (" + std::to_string(out.skipped) + " malformed lines skipped)" : ""));
  }
  if (out.skipped > 0) log::warn(path, ": skipped ", out.skipped, " malformed lines (data.skip_malformed)");
  return out;
}

}  // namespace

SftDataset load_sft_dataset(const std::string& path, const DatasetOptions& options) {
  return read_jsonl<SftRecord>(path, options, "SFT dataset", [](const nlohmann::json& obj) {
    SftRecord r;
    if (obj.contains("messages")) {
      r.messages = parse_messages(obj["messages"], "messages");
    } else if (obj.contains("prompt") || obj.contains("completion")) {
      r.messages = parse_prompt(obj);
      std::vector<ChatMessage> completion = parse_completion(obj, "completion");
      r.messages.insert(r.messages.end(), completion.begin(), completion.end());
    } else if (obj.contains("text")) {
      r.is_text = true;
      r.text = string_field(obj, "text");
      if (r.text.empty()) throw Malformed("field \"text\" is empty");
      return r;
    } else {
      throw Malformed("expected {\"prompt\", \"completion\"}, {\"messages\"} or {\"text\"}");
    }
    bool any_target = false;
    for (const ChatMessage& m : r.messages) any_target |= (m.role == "assistant" && m.train);
    if (!any_target) throw Malformed("no assistant message to train on");
    return r;
  });
}

PreferenceDataset load_preference_dataset(const std::string& path, const DatasetOptions& options) {
  return read_jsonl<PreferenceRecord>(path, options, "preference dataset", [](const nlohmann::json& obj) {
    PreferenceRecord r;
    r.prompt = parse_prompt(obj);
    r.chosen = completion_text(obj, "chosen");
    r.rejected = completion_text(obj, "rejected");
    if (r.chosen == r.rejected) throw Malformed("\"chosen\" and \"rejected\" are identical (the pair compares nothing)");
    if (auto w = obj.find("weight"); w != obj.end()) {
      if (!w->is_number()) throw Malformed("field \"weight\" must be a number");
      r.weight = w->get<double>();
      if (!(r.weight >= 0.0)) throw Malformed("field \"weight\" must be >= 0");
    }
    return r;
  });
}

PromptDataset load_prompt_dataset(const std::string& path, const DatasetOptions& options) {
  return read_jsonl<PromptRecord>(path, options, "prompt dataset", [](const nlohmann::json& obj) {
    PromptRecord r;
    r.prompt = parse_prompt(obj);
    const nlohmann::json& p = obj["prompt"];
    if (p.is_string()) {
      r.prompt_text = p.get<std::string>();
    } else {
      for (const ChatMessage& m : r.prompt) {
        if (m.role == "user") r.prompt_text = m.content;
      }
    }
    if (auto a = obj.find("answer"); a != obj.end() && !a->is_null()) {
      if (a->is_string()) r.answer = a->get<std::string>();
      else if (a->is_number()) r.answer = a->dump();
      else throw Malformed("field \"answer\" must be a string or a number");
    }
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (it.key() != "prompt" && it.key() != "answer") r.extra[it.key()] = it.value();
    }
    return r;
  });
}

}  // namespace scorch::data
