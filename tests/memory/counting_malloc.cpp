// Counts the heap bytes in use and their peak, by wrapping glibc's malloc
// family (operator new and Eigen both end up here). Linked only into the
// memory tests, which are not built under AddressSanitizer (it wraps malloc
// itself).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include <malloc.h>

#include <atomic>
#include <cstddef>

#include "counting_malloc.hpp"

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {
std::atomic<long long> in_use{0};
std::atomic<long long> peak{0};
std::atomic<long long> calls{0};

void* note_allocation(void* p) {
  ++calls;
  if (p) {
    const long long now = in_use += static_cast<long long>(malloc_usable_size(p));
    long long seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
  return p;
}
void note_release(void* p) {
  if (p) in_use -= static_cast<long long>(malloc_usable_size(p));
}
}  // namespace

namespace nsl::test {
long long heap_in_use() { return in_use.load(); }
long long heap_peak() { return peak.load(); }
void reset_heap_peak() { peak.store(in_use.load()); }
long long allocations() { return calls.load(); }
}  // namespace nsl::test

extern "C" {
void* malloc(std::size_t n) { return note_allocation(__libc_malloc(n)); }
void* calloc(std::size_t n, std::size_t size) { return note_allocation(__libc_calloc(n, size)); }
void* realloc(void* p, std::size_t n) {
  note_release(p);
  return note_allocation(__libc_realloc(p, n));
}
void free(void* p) {
  note_release(p);
  __libc_free(p);
}
void* memalign(std::size_t alignment, std::size_t n) { return note_allocation(__libc_memalign(alignment, n)); }
void* aligned_alloc(std::size_t alignment, std::size_t n) { return note_allocation(__libc_memalign(alignment, n)); }
int posix_memalign(void** out, std::size_t alignment, std::size_t n) {
  void* p = note_allocation(__libc_memalign(alignment, n));
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}
}
