// Heap accounting for the memory tests (see counting_malloc.cpp).
#pragma once

namespace nsl::test {
long long heap_in_use();   ///< bytes currently allocated
long long heap_peak();     ///< highest heap_in_use() since the last reset
void reset_heap_peak();    ///< starts a new peak measurement from now
long long allocations();   ///< calls of the malloc family so far (frees not counted)
}  // namespace nsl::test
