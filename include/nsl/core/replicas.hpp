// nsl/core/replicas.hpp — what a layer needs of a data-parallel run.
//
// In data-parallel training each replica (a process, usually one per core
// group or machine) runs the same network on its part of every batch. Most
// layers need nothing from the others; synchronised BatchNorm needs sums over
// all of them. This interface is that need, and no more, so the library
// itself has no dependency on a transport: nsl/distributed/mpi.hpp implements
// it on MPI, and a test can implement it with threads.
#pragma once

#include <cstddef>

namespace nsl {

/// Sums numbers over the replicas of a data-parallel run, in place, giving
/// every replica the same result. Synchronised BatchNorm sums its
/// per-channel statistics with it, so that N replicas with batch B/N each
/// normalise as one process with batch B does.
class ReplicaSum {
 public:
  virtual ~ReplicaSum() = default;
  /// values[0..count) := their sum over all replicas. A collective: every
  /// replica calls it, in the same order, with the same count.
  virtual void sum(double* values, std::size_t count) = 0;
};

}  // namespace nsl
