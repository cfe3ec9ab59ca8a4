#pragma once
// Builds the KPI operators of SPEC 2/4 (counters, horizon gauges, spike detector) for the runner.
#include <memory>
#include <vector>

#include "operators/counter_operator.h"
#include "operators/operator.h"
#include "operators/reputation_operator.h"
#include "operators/settings.h"
#include "operators/vocabulary.h"

namespace sp {

// Returns {CounterOperator, ReputationOperator}; each copies what it needs from the arguments,
// except `spend`, which the counters share with whoever reloads it (Topology::spend_table()).
std::vector<std::unique_ptr<Operator>> make_kpi_operators_sharing_spend(
    const Vocabulary& vocabulary, const KpiSettings& kpi, std::shared_ptr<const SpendTable> spend);
std::vector<std::unique_ptr<Operator>> make_kpi_operators(const Vocabulary& vocabulary,
                                                          const KpiSettings& kpi,
                                                          std::vector<SpendEntry> spend);

}  // namespace sp
