// Stop rules of the decode loop (stop_rules.h).
#include "rollout/stop_rules.h"

#include <algorithm>

#include "common/error.h"
#include "tokenizer/tokenizer.h"

namespace scorch {
namespace {

bool contains(const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos: return "eos";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
  }
  return "unknown";
}

StopStringMatcher::StopStringMatcher(const Tokenizer* tokenizer, const std::vector<std::string>& stops)
    : tokenizer_(tokenizer), stops_(stops) {
  for (const auto& s : stops_) window_ = std::max<int64_t>(window_, static_cast<int64_t>(s.size()) + 2);
}

bool StopStringMatcher::matches(const std::vector<int64_t>& ids) const {
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t from = std::max<int64_t>(0, n - window_);
  const std::string tail = tokenizer_->decode(std::vector<int64_t>(ids.begin() + from, ids.end()));
  for (const auto& s : stops_) {
    if (tail.find(s) != std::string::npos) return true;
  }
  return false;
}

StopRules::StopRules(const std::vector<int64_t>& eos_ids, const std::vector<int64_t>& extra_eos_ids,
                     const SamplingParams& params, const Tokenizer* tokenizer)
    : eos_ids_(eos_ids), stop_token_ids_(params.stop_token_ids), stop_strings_(tokenizer, params.stop_strings) {
  if (stop_strings_.active() && !tokenizer) {
    throw UserError("sampling: stop strings need a tokenizer to decode text (give the engine one)");
  }
  eos_ids_.insert(eos_ids_.end(), extra_eos_ids.begin(), extra_eos_ids.end());
}

std::optional<FinishReason> StopRules::finished(const std::vector<int64_t>& ids, int64_t budget) const {
  const int64_t token = ids.back();
  if (contains(eos_ids_, token)) return FinishReason::kEos;
  if (contains(stop_token_ids_, token) || (stop_strings_.active() && stop_strings_.matches(ids))) {
    return FinishReason::kStop;
  }
  if (static_cast<int64_t>(ids.size()) >= budget) return FinishReason::kLength;
  return std::nullopt;
}

}  // namespace scorch
