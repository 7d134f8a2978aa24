// JinjaTemplate over llama.cpp's engine (see jinja_template.h). Built without the engine (its
// source cache absent at configure time) every constructor call is a UserError saying how to get it.
#include "tokenizer/jinja_template.h"

#include "common/error.h"

#ifdef SCORCH_HAVE_JINJA
#include "jinja/lexer.h"
#include "jinja/parser.h"
#include "jinja/runtime.h"
#include "json.h"
#endif

namespace scorch {

#ifdef SCORCH_HAVE_JINJA

struct JinjaTemplate::Impl {
  std::string source;
  jinja::program program;
};

bool jinja_engine_available() { return true; }

JinjaTemplate::JinjaTemplate(const std::string& source, const std::string& origin)
    : impl_(std::make_unique<Impl>()), origin_(origin) {
  impl_->source = source;
  // The engine's parse tree is as deep as the longest operator chain (`1 + 1 + ...` is built in a
  // loop, then evaluated and freed by recursion), so the source size bounds the stack a template
  // can take; real templates are under 20 KB (gpt-oss's, the largest known, is 16.7 KB).
  if (source.size() > kMaxTemplateBytes) {
    throw UserError("chat template " + origin + " is " + std::to_string(source.size()) + " bytes, more than the " +
                    std::to_string(kMaxTemplateBytes) + " scorch accepts (real chat templates are under 20 KB)" +
                    "\nFix: point tokenizer.chat_template at the model's real template, or use a built-in (chatml, llama-2, plain, none)");
  }
  try {
    jinja::lexer lexer;
    impl_->program = jinja::parse_from_tokens(lexer.tokenize(source));
  } catch (const std::exception& e) {
    throw UserError("chat template " + origin + " does not parse: " + e.what() +
                    "\nFix: correct the template, or set tokenizer.chat_template to a built-in (chatml, llama-2, plain, none)");
  }
}

JinjaTemplate::~JinjaTemplate() = default;

std::vector<TemplatePart> JinjaTemplate::render(const std::string& data_json, const std::string& vars_json) const {
  try {
    jinja::context ctx(impl_->source);
    jinja::global_from_json(ctx, common_json::parse(data_json), /*mark_input=*/true);
    jinja::global_from_json(ctx, common_json::parse(vars_json), /*mark_input=*/false);
    jinja::runtime runtime(ctx);
    const jinja::value results = runtime.execute(impl_->program);
    const auto parts = jinja::runtime::gather_string_parts(results);
    std::vector<TemplatePart> out;
    for (const auto& p : parts->val_str.parts) {
      if (!p.val.empty()) out.push_back({p.val, p.is_input});
    }
    return out;
  } catch (const std::exception& e) {
    throw UserError("chat template " + origin_ + " failed while rendering: " + e.what() +
                    "\nFix: check the messages the template expects (roles, order), or set tokenizer.chat_template to a built-in");
  }
}

#else

struct JinjaTemplate::Impl {};

bool jinja_engine_available() { return false; }

JinjaTemplate::JinjaTemplate(const std::string&, const std::string& origin) : origin_(origin) {
  throw UserError("chat template " + origin + " needs the Jinja engine, which this build lacks. Fix: run tools/setup "
                  "(it fetches llama.cpp's engine from PyPI) and rebuild, or set tokenizer.chat_template to a built-in "
                  "(chatml, llama-2, plain, none)");
}

JinjaTemplate::~JinjaTemplate() = default;

std::vector<TemplatePart> JinjaTemplate::render(const std::string&, const std::string&) const { return {}; }

#endif

}  // namespace scorch
