#pragma once
// Builds the windowing operators of a configuration (SPEC 3, `windows:`).
#include <memory>
#include <vector>

#include "operators/operator.h"
#include "operators/settings.h"
#include "operators/vocabulary.h"

namespace sp {

// One operator per WindowSpec, in config order: WindowOperator for tumbling/hopping (the first
// tumbling one exports socialpulse_engagement_rate), SessionWindowOperator for session.
std::vector<std::unique_ptr<Operator>> make_window_operators(const std::vector<WindowSpec>& specs,
                                                             const Vocabulary& vocabulary);

}  // namespace sp
