// A model's own Jinja chat template (tokenizer_config.json "chat_template" or chat_template.jinja),
// rendered by llama.cpp's C++ Jinja engine (common/jinja, MIT). tools/setup fetches that engine as
// part of the pinned, checksummed llama-cpp-python source distribution from PyPI and CMake builds
// it from the cache (never copied into this repository). The engine tracks which output text came
// from the input data (the messages), so the tokenizer can keep special-token text in user data
// from becoming control ids.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace scorch {

struct TemplatePart {
  std::string text;
  bool data = false;  // text from the messages (user data), not from the template itself
};

class JinjaTemplate {
 public:
  // Larger sources are refused (a UserError naming `origin`): see the constructor.
  static constexpr size_t kMaxTemplateBytes = 256 * 1024;
  // Parses `source`; a template that does not parse is a UserError naming `origin` (the file) and
  // the line. Also a UserError when this build has no Jinja engine (tools/setup was not run).
  JinjaTemplate(const std::string& source, const std::string& origin);
  ~JinjaTemplate();
  // Renders with `data_json` (a JSON object: messages, tools, ...: marked as data) and `vars_json`
  // (a JSON object: add_generation_prompt, bos_token, eos_token, chat_template_kwargs: template
  // text). A raise_exception() in the template or a runtime error is a UserError naming `origin`.
  std::vector<TemplatePart> render(const std::string& data_json, const std::string& vars_json) const;
  const std::string& origin() const { return origin_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string origin_;
};

// Whether this build includes the Jinja engine.
bool jinja_engine_available();

}  // namespace scorch
