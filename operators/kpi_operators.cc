#include "operators/kpi_operators.h"

namespace sp {

std::vector<std::unique_ptr<Operator>> make_kpi_operators_sharing_spend(
    const Vocabulary& vocabulary, const KpiSettings& kpi, std::shared_ptr<const SpendTable> spend) {
  std::vector<std::unique_ptr<Operator>> ops;
  ops.push_back(std::make_unique<CounterOperator>(std::move(spend), vocabulary));
  ops.push_back(std::make_unique<ReputationOperator>(vocabulary, kpi));
  return ops;
}

std::vector<std::unique_ptr<Operator>> make_kpi_operators(const Vocabulary& vocabulary,
                                                          const KpiSettings& kpi,
                                                          std::vector<SpendEntry> spend) {
  return make_kpi_operators_sharing_spend(
      vocabulary, kpi, std::make_shared<const SpendTable>(SpendValues{"EUR", std::move(spend)}));
}

}  // namespace sp
