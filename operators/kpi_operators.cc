#include "operators/kpi_operators.h"

namespace sp {

std::vector<std::unique_ptr<Operator>> make_kpi_operators(const Vocabulary& vocabulary,
                                                          const KpiSettings& kpi,
                                                          std::vector<SpendEntry> spend) {
  std::vector<std::unique_ptr<Operator>> ops;
  ops.push_back(std::make_unique<CounterOperator>(vocabulary, std::move(spend)));
  ops.push_back(std::make_unique<ReputationOperator>(vocabulary, kpi));
  return ops;
}

}  // namespace sp
