// nsl/core/threads.hpp — the library's one global setting: how many threads
// its OpenMP loops and Eigen's GEMMs may use.
#pragma once

#include <Eigen/Core>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>

#include "nsl/core/error.hpp"
#include "nsl/core/shape.hpp"

// NSL_OMP(parallel for ...) expands to `#pragma omp parallel for ...` when
// compiled with OpenMP and to nothing otherwise (no unknown-pragma warnings).
#ifdef _OPENMP
#define NSL_OMP_PRAGMA_(text) _Pragma(#text)
#define NSL_OMP(directive) NSL_OMP_PRAGMA_(omp directive)
#else
#define NSL_OMP(directive)
#endif

namespace nsl {

/// Threads nsl uses (1 when built without OpenMP).
inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Sets the thread count for nsl's OpenMP loops and for Eigen (n >= 1).
inline void set_num_threads(int n) {
  require(n >= 1, ErrorKind::argument, "set_num_threads: expected n >= 1, got ", n);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  Eigen::setNbThreads(n);
}

/// True while inside a parallel region (then work must not spawn more threads).
inline bool in_parallel_region() {
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

/// run(item, thread) for item < count: serially with thread 0 when
/// `threads` is 1 (or without OpenMP), else split over that many OpenMP
/// threads in static order, `thread` the caller's OpenMP thread number (to
/// pick per-thread scratch).
template <class Run>
void for_each_on_threads(index count, int threads, const Run& run) {
#ifdef _OPENMP
  if (threads > 1) {
NSL_OMP(parallel for num_threads(threads) schedule(static))
    for (index item = 0; item < count; ++item) run(item, omp_get_thread_num());
    return;
  }
#else
  (void)threads;
#endif
  for (index item = 0; item < count; ++item) run(item, 0);
}

/// first(t) for every t < threads, then, once all of those have returned,
/// second(t) for every t < threads: one parallel region of `threads` OpenMP
/// threads with a barrier between the two phases (serially with one thread
/// or without OpenMP). For work whose second phase reads what every thread
/// wrote in the first, at the cost of one barrier instead of a second region.
template <class First, class Second>
void on_threads_in_two_phases(int threads, const First& first, const Second& second) {
#ifdef _OPENMP
  if (threads > 1) {
NSL_OMP(parallel num_threads(threads))
    {
      const int team = omp_get_num_threads(), me = omp_get_thread_num();
      for (int t = me; t < threads; t += team) first(t);
NSL_OMP(barrier)
      for (int t = me; t < threads; t += team) second(t);
    }
    return;
  }
#endif
  for (int t = 0; t < threads; ++t) first(t);
  for (int t = 0; t < threads; ++t) second(t);
}

/// How many pieces parallel_ranges / parallel_pieces split [0, n) into (>= 1).
inline index count_pieces(index n, index grain) {
  const int threads = in_parallel_region() ? 1 : num_threads();
  return std::max<index>(1, std::min<index>(threads, grain > 0 ? n / grain : n));
}

/// parallel_ranges with the piece's number: body(piece, begin, end) with
/// piece in [0, count_pieces(n, grain)), e.g. to pick per-piece scratch.
template <class Body>
void parallel_pieces(index n, index grain, Body&& body) {
  const index pieces = count_pieces(n, grain);
  if (pieces <= 1) {
    if (n > 0) body(index(0), index(0), n);
    return;
  }
NSL_OMP(parallel for num_threads(int(pieces)) schedule(static))
  for (index piece = 0; piece < pieces; ++piece) body(piece, n * piece / pieces, n * (piece + 1) / pieces);
}

/// Calls body(begin, end) on contiguous pieces of [0, n), one piece per
/// thread, in parallel when the range holds at least `grain` items per
/// thread and we are not already inside a parallel region; otherwise once,
/// serially, on the whole range. For element-wise work whose result does not
/// depend on how the range is split.
template <class Body>
void parallel_ranges(index n, index grain, Body&& body) {
  parallel_pieces(n, grain, [&](index, index begin, index end) { body(begin, end); });
}

}  // namespace nsl
