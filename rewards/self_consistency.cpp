// Label-free rewards from agreement within a group (ALGORITHMS.md §5). Answers are extracted
// like math_answer (same params) and clustered with math::answers_equal: each answer joins the
// first cluster whose representative (its earliest member) it equals, so clustering is
// deterministic in sample order. Unparseable answers join no cluster and never win.
//
// `majority_vote` (TTRL / SRT): the pseudo-label is the largest cluster; ties go to the cluster
//   whose first member comes first in the group. r_i = 1 if sample i is in that cluster, else 0.
//   A group where nothing parses has no label: every member scores 0 (no_label_groups counts it).
//   Diagnostics: majority_ratio (mean over labelled groups of majority count / group size),
//   label_accuracy (labelled groups with a gold: label == gold), reward_accuracy (samples with a
//   gold: pseudo-reward == the reward the gold would give), no_label_groups.
//
// `soft_consistency` (RESTRAIN, arXiv 2510.02172): every cluster j with frequency f_j = count_j / G
//   is a candidate label with weight w_j = g(f_j) / Σ_k g(f_k), g(f) = exp(−(f − center)² / (2 σ²));
//   r_i = w_{cluster(i)} (0 when unparseable). A group whose majority frequency is below `kappa`
//   gets r = 0 for every member and advantage offset −delta (self-penalisation).
//   Params (scorch's defaults; the paper publishes none): center 1.0, sigma 0.3, kappa 0.25 (a
//   fraction of the group size), delta 0.5. Not done: the paper's optional per-prompt weight from
//   the base model's consensus.
//   Diagnostics: majority_ratio (mean over all groups; 0 for a group where nothing parses),
//   label_accuracy (as above), low_consistency_groups.
#include <cmath>
#include <limits>

#include "rewards/builtin.h"

namespace scorch::rewards {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct GroupClusters {
  std::vector<int> cluster_of;           // per group member; -1 = no answer
  std::vector<size_t> counts;            // per cluster
  std::vector<std::string> representative;
  int majority = -1;                     // largest cluster, earliest on ties; -1 = none
};

GroupClusters cluster_group(const std::vector<size_t>& members, const std::vector<std::string>& answers,
                            const math::CompareOptions& compare) {
  GroupClusters g;
  g.cluster_of.assign(members.size(), -1);
  for (size_t m = 0; m < members.size(); ++m) {
    const std::string& a = answers[members[m]];
    if (a.empty()) continue;
    int found = -1;
    for (size_t c = 0; c < g.representative.size() && found < 0; ++c)
      if (math::answers_equal(g.representative[c], a, compare)) found = static_cast<int>(c);
    if (found < 0) {
      found = static_cast<int>(g.representative.size());
      g.representative.push_back(a);
      g.counts.push_back(0);
    }
    g.cluster_of[m] = found;
    ++g.counts[static_cast<size_t>(found)];
  }
  for (size_t c = 0; c < g.counts.size(); ++c)
    if (g.majority < 0 || g.counts[c] > g.counts[static_cast<size_t>(g.majority)]) g.majority = static_cast<int>(c);
  return g;
}

struct Common {
  math::ExtractOptions extract;
  math::CompareOptions compare;
  bool reject_echo = true;
  bool extract_gold = true;
  void read(Params& p) {
    extract = read_extract_options(p);
    compare = read_compare_options(p);
    reject_echo = p.flag("reject_prompt_echo", true, "a completion that only repeats the prompt has no answer");
    extract_gold = p.flag("extract_gold", true, "gold after '####' or inside \\boxed{} (for diagnostics)");
  }
  // The gold answer of a group (its first member's), or "".
  std::string group_gold(const RewardBatch& batch, const std::vector<size_t>& members) const {
    if (members.empty()) return "";
    const std::string raw = batch.gold(members[0]);
    if (raw.empty()) return "";
    return extract_gold ? math::gold_answer(raw) : raw;
  }
};

double ratio(size_t num, size_t den) { return den ? static_cast<double>(num) / static_cast<double>(den) : kNaN; }

class MajorityVote : public Reward {
 public:
  explicit MajorityVote(Params& p) { common_.read(p); }

  RewardOutput score(const RewardBatch& batch) override {
    RewardOutput out;
    out.values.assign(batch.samples.size(), kNaN);
    const ExtractedAnswers ex = extract_all(batch, common_.extract, common_.reject_echo);
    double ratio_sum = 0;
    size_t labelled = 0, no_label = 0, label_gold = 0, label_right = 0, reward_gold = 0, reward_right = 0;
    for (const auto& members : batch.groups) {
      if (members.empty()) continue;
      const GroupClusters g = cluster_group(members, ex.answers, common_.compare);
      if (g.majority < 0) ++no_label;
      else {
        ++labelled;
        ratio_sum += static_cast<double>(g.counts[static_cast<size_t>(g.majority)]) / static_cast<double>(members.size());
      }
      for (size_t m = 0; m < members.size(); ++m)
        out.values[members[m]] = (g.majority >= 0 && g.cluster_of[m] == g.majority) ? 1.0 : 0.0;
      const std::string gold = common_.group_gold(batch, members);
      if (gold.empty()) continue;
      if (g.majority >= 0) {
        ++label_gold;
        label_right += math::answers_equal(gold, g.representative[static_cast<size_t>(g.majority)], common_.compare);
      }
      for (size_t m = 0; m < members.size(); ++m) {
        const std::string& a = ex.answers[members[m]];
        const double truth = !a.empty() && math::answers_equal(gold, a, common_.compare) ? 1.0 : 0.0;
        ++reward_gold;
        reward_right += truth == out.values[members[m]];
      }
    }
    out.diagnostics["majority_ratio"] = labelled ? ratio_sum / static_cast<double>(labelled) : kNaN;
    out.diagnostics["label_accuracy"] = ratio(label_right, label_gold);
    out.diagnostics["reward_accuracy"] = ratio(reward_right, reward_gold);
    out.diagnostics["no_label_groups"] = static_cast<double>(no_label);
    return out;
  }

 private:
  Common common_;
};

class SoftConsistency : public Reward {
 public:
  explicit SoftConsistency(Params& p) {
    common_.read(p);
    center_ = p.number("center", 1.0, 0.0, 1.0, "frequency at which a candidate label's weight peaks");
    sigma_ = p.number("sigma", 0.3, 1e-6, 100.0, "width of the Gaussian over frequencies");
    kappa_ = p.number("kappa", 0.25, 0.0, 1.0, "groups whose majority frequency is below this are penalised");
    delta_ = p.number("delta", 0.5, 0.0, 100.0, "advantage offset -delta for penalised groups");
  }

  double gaussian(double f) const { return std::exp(-(f - center_) * (f - center_) / (2 * sigma_ * sigma_)); }

  RewardOutput score(const RewardBatch& batch) override {
    RewardOutput out;
    out.values.assign(batch.samples.size(), kNaN);
    out.advantage_offsets.assign(batch.samples.size(), 0.0);
    const ExtractedAnswers ex = extract_all(batch, common_.extract, common_.reject_echo);
    double ratio_sum = 0;
    size_t groups = 0, low = 0, label_gold = 0, label_right = 0;
    for (const auto& members : batch.groups) {
      if (members.empty()) continue;
      ++groups;
      const GroupClusters g = cluster_group(members, ex.answers, common_.compare);
      const double size = static_cast<double>(members.size());
      const double majority_freq = g.majority < 0 ? 0.0 : static_cast<double>(g.counts[static_cast<size_t>(g.majority)]) / size;
      ratio_sum += majority_freq;
      if (majority_freq < kappa_ || g.majority < 0) {
        ++low;
        for (size_t m : members) {
          out.values[m] = 0.0;
          out.advantage_offsets[m] = -delta_;
        }
      } else {
        std::vector<double> w(g.counts.size());
        double total = 0;
        for (size_t c = 0; c < w.size(); ++c) total += w[c] = gaussian(static_cast<double>(g.counts[c]) / size);
        for (size_t m = 0; m < members.size(); ++m) {
          const int c = g.cluster_of[m];
          out.values[members[m]] = (c < 0 || total <= 0) ? 0.0 : w[static_cast<size_t>(c)] / total;
        }
      }
      const std::string gold = common_.group_gold(batch, members);
      if (!gold.empty() && g.majority >= 0) {
        ++label_gold;
        label_right += math::answers_equal(gold, g.representative[static_cast<size_t>(g.majority)], common_.compare);
      }
    }
    out.diagnostics["majority_ratio"] = groups ? ratio_sum / static_cast<double>(groups) : kNaN;
    out.diagnostics["label_accuracy"] = ratio(label_right, label_gold);
    out.diagnostics["low_consistency_groups"] = static_cast<double>(low);
    return out;
  }

 private:
  Common common_;
  double center_ = 1.0, sigma_ = 0.3, kappa_ = 0.25, delta_ = 0.5;
};

}  // namespace

void register_consistency_rewards() {
  register_reward("majority_vote", {"TTRL/SRT: 1 if the sample's answer is the group's most frequent answer", false,
                                    [](Params& p, const RewardContext&) { return std::make_unique<MajorityVote>(p); }});
  register_reward("soft_consistency",
                  {"RESTRAIN: Gaussian-of-frequency weighted pseudo-labels, -delta offset for low-consistency groups", false,
                   [](Params& p, const RewardContext&) { return std::make_unique<SoftConsistency>(p); }});
}

}  // namespace scorch::rewards
