// nsl/distributed/mpi.hpp — data-parallel training on MPI.
//
// N processes (ranks), each with a whole copy of the network, split every
// batch: rank r runs forward and backward on its part, then the gradients
// are summed over the ranks and divided by N, so each rank's optimiser takes
// the same step. With each rank's loss the mean over its own part, that is
// the gradient of the mean loss over the whole batch (for parts of equal
// size; a caller with unequal parts scales each rank's loss gradient by
// N x its part's share of the batch, as nsl-train does).
//
//   DataParallel<T> dp(net, comm);  // broadcasts rank 0's parameters and buffers
//   forward, loss, backward         // buckets of gradients are sent during backward
//   dp.average_gradients();         // waits for them: every rank has the mean
//   sgd.step(lr);
//
// What is exchanged, and when:
// - Gradients, in buckets of about `bucket_bytes` (25 MB by default): the
//   parameters in the order backward finishes them (the last layer first),
//   whole layers to a bucket. Sequential calls a hook after each layer's
//   backward; a bucket whose layers are all done is packed and started with
//   the non-blocking MPI_Iallreduce at once, so the sums travel while the
//   layers below still compute. average_gradients() waits for them all.
// - Parameters and buffers, from rank 0, when DataParallel is made (and on
//   broadcast_state(): after a resume every rank starts identical).
// - With synchronised BatchNorm (the default), every BatchNorm2d in the
//   network, the predictors' included, sums its batch statistics and the
//   sums of its backward over the ranks (nsl/core/replicas.hpp): N ranks with
//   batch B/N compute what one process with batch B computes, the running
//   statistics included. Without it, each rank normalises with its own part
//   of the batch and keeps running statistics of its own.
//
// Determinism: the buckets, their order and their sizes depend only on the
// network and bucket_bytes, never on timing, and MPI sums each bucket with
// the same algorithm for the same number of ranks and the same size, so the
// same ranks and seed give the same result, bit for bit, every time
// (tests/mpi checks it). Every rank receives the same sums, so the ranks'
// parameters stay identical (replicas_agree() checks it).
//
// This header needs MPI (<mpi.h>, link MPI::MPI_CXX); nothing else in nsl
// includes it. The caller initialises MPI (Environment below, or MPI_Init);
// MPI_THREAD_FUNNELED is enough: only the thread that runs backward calls MPI.
#pragma once

// MPI's C interface only: not the C++ bindings (deprecated in MPI 2.2, gone in 3.0).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "nsl/core/error.hpp"
#include "nsl/core/replicas.hpp"
#include "nsl/models/sequential.hpp"

namespace nsl::mpi {

/// Fails with an Error naming `what` and MPI's own message unless rc is
/// MPI_SUCCESS (for communicators whose error handler returns errors).
inline void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  fail(ErrorKind::io, cat(what, ": ", std::string(text, std::size_t(length))));
}

/// Whether an MPI launcher started this process (mpirun or mpiexec of Open
/// MPI, MPICH or Intel MPI; Slurm's srun with PMI or PMIx): the variables
/// they give each rank. A program started alone need not initialise MPI.
inline bool launched() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

/// MPI for the life of the object: MPI_Init_thread (MPI_THREAD_FUNNELED)
/// when made, MPI_Finalize when destroyed (unless something else initialised
/// MPI first, which then finalises it too).
class Environment {
 public:
  Environment(int& argc, char**& argv) {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (initialised) return;
    int provided = 0;
    check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
    require(provided >= MPI_THREAD_FUNNELED, ErrorKind::state,
            "MPI: the library gives no MPI_THREAD_FUNNELED support (OpenMP threads beside MPI)");
  }
  ~Environment() {
    if (!owner_) return;
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (!finalised) MPI_Finalize();
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

 private:
  bool owner_ = false;
};

/// The MPI datatype of T (float or double).
template <class T>
MPI_Datatype datatype() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "nsl::mpi: float or double");
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

/// A communicator's rank, size and the few collectives nsl uses. Does not
/// own the MPI_Comm.
class Communicator {
 public:
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm get() const { return comm_; }

  /// values[0..n) := their sum over the ranks (every rank gets the same).
  void sum(double* values, std::size_t n) const {
    require(n <= std::size_t(INT32_MAX), ErrorKind::argument, "nsl::mpi: ", n, " values in one sum");
    if (n) check(MPI_Allreduce(MPI_IN_PLACE, values, int(n), MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
  }
  /// Rank `root`'s data[0..n) to every rank.
  template <class T>
  void broadcast(T* data, std::size_t n, int root = 0) const {
    require(n <= std::size_t(INT32_MAX), ErrorKind::argument, "nsl::mpi: ", n, " values in one broadcast");
    if (n) check(MPI_Bcast(data, int(n), datatype<T>(), root, comm_), "MPI_Bcast");
  }
  /// Whether every rank passed the same value.
  bool all_equal(std::uint64_t value) const {
    std::uint64_t low = value, high = value;
    check(MPI_Allreduce(MPI_IN_PLACE, &low, 1, MPI_UINT64_T, MPI_MIN, comm_), "MPI_Allreduce");
    check(MPI_Allreduce(MPI_IN_PLACE, &high, 1, MPI_UINT64_T, MPI_MAX, comm_), "MPI_Allreduce");
    return low == high;
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

/// Synchronised BatchNorm's sums (nsl/core/replicas.hpp) over a communicator.
class MpiReplicaSum final : public ReplicaSum {
 public:
  explicit MpiReplicaSum(Communicator comm) : comm_(comm) {}
  void sum(double* values, std::size_t count) override { comm_.sum(values, count); }

 private:
  Communicator comm_;
};

struct DataParallelOptions {
  std::size_t bucket_bytes = std::size_t(25) << 20;  ///< gradients per MPI_Iallreduce, about (whole layers)
  bool sync_batch_norm = true;                        ///< BatchNorm statistics over every rank's batch
};

template <class T>
class DataParallel {
 public:
  /// Takes part in `net`'s backward (its hook) and BatchNorm (synchronised,
  /// unless options say otherwise) until destroyed, and makes every rank's
  /// parameters and buffers rank 0's. A collective: every rank makes it.
  DataParallel(Sequential<T>& net, Communicator comm = Communicator(), DataParallelOptions options = {})
      : net_(net), comm_(comm), options_(options), replica_sum_(comm) {
    require(options.bucket_bytes >= 1, ErrorKind::argument, "DataParallel: bucket_bytes must be >= 1");
    parameters_ = net.parameters();
    std::vector<std::size_t> first(net.size() + 1, 0);  // layer i's parameters: [first[i], first[i+1])
    for (std::size_t i = 0; i < net.size(); ++i) first[i + 1] = first[i] + net.layer(i).parameters().size();
    require(first.back() == parameters_.size(), ErrorKind::state,
            "DataParallel: the network's parameters are not its layers' in order");
    // Buckets in the order backward finishes the layers: the last first.
    Bucket current;
    std::size_t bytes = 0;
    for (std::size_t i = net.size(); i-- > 0;) {
      if (first[i] == first[i + 1]) continue;
      for (std::size_t p = first[i]; p < first[i + 1]; ++p) {
        current.parameters.push_back(p);
        current.count += std::size_t(parameters_[p].grad.size());
      }
      current.lowest_layer = i;
      bytes = current.count * sizeof(T);
      if (bytes >= options.bucket_bytes) close_bucket(current);
    }
    if (!current.parameters.empty()) close_bucket(current);
    net_.set_backward_hook([this](std::size_t layer) { on_layer_done(layer); });
    if (options.sync_batch_norm) net_.set_replica_sum(&replica_sum_);
    broadcast_state();
  }
  ~DataParallel() {
    net_.set_backward_hook({});
    if (options_.sync_batch_norm) net_.set_replica_sum(nullptr);
    for (Bucket& b : buckets_)
      if (b.started) MPI_Wait(&b.request, MPI_STATUS_IGNORE);
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  /// Every rank's parameters and buffers := rank 0's (a collective).
  void broadcast_state() {
    for (auto& p : parameters_) comm_.broadcast(p.value.data(), std::size_t(p.value.size()));
    broadcast_buffers();
  }
  /// Every rank's buffers (BatchNorm's running statistics) := rank 0's: per-rank
  /// BatchNorm keeps its own, made one before a test or a model file.
  void broadcast_buffers() {
    for (auto& b : net_.buffers()) comm_.broadcast(b.value.data(), std::size_t(b.value.size()));
  }

  /// Waits for every bucket (starting any that backward did not), then sets
  /// each gradient to its mean over the ranks. Call it after backward and
  /// before the optimiser's step, on every rank.
  void average_gradients() {
    const auto start = std::chrono::steady_clock::now();
    for (Bucket& b : buckets_)
      if (!b.started) start_bucket(b);
    const T ranks = T(comm_.size());
    for (Bucket& b : buckets_) {
      check(MPI_Wait(&b.request, MPI_STATUS_IGNORE), "MPI_Wait (gradients)");
      b.started = false;
      const T* from = b.buffer.data();
      for (std::size_t p : b.parameters) {
        const TensorView<T>& grad = parameters_[p].grad;
        T* to = grad.data();
        for (index k = 0; k < grad.size(); ++k) to[k] = from[k] / ranks;
        from += grad.size();
      }
    }
    wait_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  /// Whether every rank's parameters (and, with `buffers`, its buffers:
  /// not so with per-rank BatchNorm's own running statistics) are bitwise
  /// equal (a collective; a hash of their bytes compared).
  bool replicas_agree(bool buffers = true) {
    std::uint64_t hash = 1469598103934665603ull;  // FNV-1a
    auto add = [&](const TensorView<T>& v) {
      const auto* bytes = reinterpret_cast<const unsigned char*>(v.data());
      for (std::size_t k = 0; k < std::size_t(v.size()) * sizeof(T); ++k) hash = (hash ^ bytes[k]) * 1099511628211ull;
    };
    for (auto& p : parameters_) add(p.value);
    if (buffers)
      for (auto& b : net_.buffers()) add(b.value);
    return comm_.all_equal(hash);
  }

  const Communicator& communicator() const { return comm_; }
  int rank() const { return comm_.rank(); }
  int ranks() const { return comm_.size(); }
  /// How many buckets, and the bytes each rank sends into the sums per step.
  std::size_t buckets() const { return buckets_.size(); }
  std::size_t bytes_per_step() const {
    std::size_t n = 0;
    for (const Bucket& b : buckets_) n += b.count * sizeof(T);
    return n;
  }
  /// Seconds the last average_gradients() waited for the sums to arrive.
  double last_wait_seconds() const { return wait_seconds_; }

 private:
  struct Bucket {
    std::vector<std::size_t> parameters;  ///< indices into parameters_, in backward's order
    std::size_t count = 0;                ///< values
    std::size_t lowest_layer = 0;         ///< done when backward has passed this layer
    std::vector<T> buffer;                ///< the packed gradients, summed in place
    MPI_Request request = MPI_REQUEST_NULL;
    bool started = false;
  };

  void close_bucket(Bucket& current) {
    require(current.count <= std::size_t(INT32_MAX), ErrorKind::argument, "DataParallel: a layer with ",
            current.count, " gradient values (more than one MPI call sends)");
    current.buffer.resize(current.count);
    buckets_.push_back(std::move(current));
    current = Bucket();
  }

  void start_bucket(Bucket& b) {
    T* to = b.buffer.data();
    for (std::size_t p : b.parameters) {
      const TensorView<T>& grad = parameters_[p].grad;
      std::memcpy(to, grad.data(), std::size_t(grad.size()) * sizeof(T));
      to += grad.size();
    }
    check(MPI_Iallreduce(MPI_IN_PLACE, b.buffer.data(), int(b.count), datatype<T>(), MPI_SUM, comm_.get(),
                         &b.request),
          "MPI_Iallreduce (gradients)");
    b.started = true;
  }

  // Sequential's hook: layer `layer` has finished its backward. Starts every
  // bucket whose layers are all done, and lets MPI move the started ones on
  // (MPI progresses non-blocking collectives inside its calls).
  void on_layer_done(std::size_t layer) {
    if (layer + 1 == net_.size())  // a new backward: the last one's sums must have been taken
      for (const Bucket& b : buckets_)
        require(!b.started, ErrorKind::state,
                "DataParallel: a second backward before average_gradients() took the first one's sums");
    for (Bucket& b : buckets_) {
      if (b.started) {
        int done = 0;  // a finished request becomes MPI_REQUEST_NULL: MPI_Wait returns at once
        check(MPI_Test(&b.request, &done, MPI_STATUS_IGNORE), "MPI_Test (gradients)");
      } else if (layer <= b.lowest_layer) {
        start_bucket(b);
      }
    }
  }

  Sequential<T>& net_;
  Communicator comm_;
  DataParallelOptions options_;
  MpiReplicaSum replica_sum_;
  std::vector<Parameter<T>> parameters_;
  std::vector<Bucket> buckets_;
  double wait_seconds_ = 0.0;
};

}  // namespace nsl::mpi
