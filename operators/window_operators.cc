#include "operators/window_operators.h"

#include "operators/session_window_operator.h"
#include "operators/window_operator.h"

namespace sp {

std::vector<std::unique_ptr<Operator>> make_window_operators(const std::vector<WindowSpec>& specs,
                                                             const Vocabulary& vocabulary) {
  std::vector<std::unique_ptr<Operator>> ops;
  bool rate_source_taken = false;
  for (const WindowSpec& spec : specs) {
    if (spec.kind == WindowKind::session) {
      ops.push_back(std::make_unique<SessionWindowOperator>(spec, vocabulary));
      continue;
    }
    const bool rate_source = spec.kind == WindowKind::tumbling && !rate_source_taken;
    rate_source_taken = rate_source_taken || rate_source;
    ops.push_back(std::make_unique<WindowOperator>(spec, vocabulary, rate_source));
  }
  return ops;
}

}  // namespace sp
