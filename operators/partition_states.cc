#include "operators/partition_states.h"

namespace sp {

// One input topic's partitions (Kafka's partition count is an int32, but 64 Ki covers any real
// topic; the upper 16 bits of a PartitionId are the topic's index).
const int32_t kMaxIndexedPartition = 1 << 16;

}  // namespace sp
