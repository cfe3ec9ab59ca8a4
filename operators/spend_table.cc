#include "operators/spend_table.h"

namespace sp {

void SpendTable::replace(SpendValues values) {
  std::lock_guard lock(mutex_);
  values_ = std::move(values);
}

SpendValues SpendTable::get() const {
  std::lock_guard lock(mutex_);
  return values_;
}

}  // namespace sp
