#pragma once
// How the process's allocator keeps memory it freed (issue #20). librdkafka receives every fetch
// response into a buffer of its own size and frees it once its messages are consumed; checkpoints
// build and drop batches of megabytes. With glibc's defaults, blocks above the dynamic mmap
// threshold come from fresh mappings and freed heap tops go back to the kernel, so the same
// memory is faulted in and zeroed again and again: a profile at full speed showed a third of the
// CPU time in page faults (librdkafka's fetch thread and the pipeline thread). Blocks up to 32 MiB
// (the largest threshold glibc accepts) now come from the heap, and up to 256 MiB of free heap top
// is kept for reuse. Memory stays bounded by what the process held at its peak, which the limits
// bound (SPEC 6); RSS no longer shrinks after a peak.
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace sp {

inline void keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

}  // namespace sp
