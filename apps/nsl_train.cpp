// nsl-train — trains the reference network (CNN-9, NSL.md §5) on
// Fashion-MNIST or CIFAR-10/100 from the command line.
//
//   nsl-train --variant dynamic_dns --data /usr/share/datasets/fashion-mnist --epochs 1 --out runs/dns
//
// Writes OUT/run.json (the settings), OUT/steps.jsonl (training loss and
// accuracy every --log-every steps), OUT/metrics.jsonl (one JSON object per
// epoch), OUT/model.nslckpt (the model file of nsl/io/model_file.hpp, after
// every epoch: the architecture, weights, BN statistics, optimiser and
// generator state, so --resume continues bit for bit), and OUT/curves.png
// plus, for NSL variants, OUT/kernel_shapes.png. Run with --help for every
// option.
//
// --device cuda trains on the GPU (a build with -DNSL_WITH_CUDA=ON; the
// training loop of nsl_train.hpp is instantiated for it in nsl_train_cuda.cu).
//
// `mpirun -np N nsl-train ...` trains data-parallel on N processes (a build
// with MPI: libopenmpi-dev; docs/distributed.md): each rank its share of
// every batch, the gradients averaged over the ranks, BatchNorm synchronised
// (--no-sync-bn: per rank), rank 0 writes the files. Started without a
// launcher, nsl-train does not initialise MPI and runs as one process.
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>

#include "nsl_train.hpp"
#if NSL_TRAIN_WITH_MPI
#include "nsl/distributed/mpi.hpp"
#endif

#if NSL_TRAIN_WITH_CUDA
int train_on_cuda(const nsl_train::Settings& s);  // nsl_train_cuda.cu
#endif

namespace {

#if NSL_TRAIN_WITH_MPI
// Distributed on MPI_COMM_WORLD (nsl/distributed/mpi.hpp).
class MpiDistributed final : public nsl_train::Distributed {
 public:
  int rank() const override { return comm_.rank(); }
  int ranks() const override { return comm_.size(); }
  int local_ranks() const override {
    MPI_Comm local;
    nsl::mpi::check(MPI_Comm_split_type(comm_.get(), MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local),
                    "MPI_Comm_split_type");
    int n = 1;
    MPI_Comm_size(local, &n);
    MPI_Comm_free(&local);
    return n;
  }
  void sum(double* values, std::size_t n) override { comm_.sum(values, n); }
  void attach(nsl::Sequential<float>& network, const nsl_train::Settings& s) override {
    if (ranks() == 1) return;
    nsl::mpi::DataParallelOptions options;
    options.bucket_bytes = std::size_t(s.bucket_mb * 1e6) > 0 ? std::size_t(s.bucket_mb * 1e6) : 1;
    options.sync_batch_norm = s.sync_bn;
    parallel_ = std::make_unique<nsl::mpi::DataParallel<float>>(network, comm_, options);
  }
  void detach() override {
    parallel_.reset();
  }
  void average_gradients() override {
    if (parallel_) parallel_->average_gradients();
  }
  void broadcast_buffers() override {
    if (parallel_) parallel_->broadcast_buffers();
  }
  std::size_t bytes_per_step() const override { return parallel_ ? parallel_->bytes_per_step() : 0; }
  double last_wait_seconds() const override { return parallel_ ? parallel_->last_wait_seconds() : 0.0; }

 private:
  nsl::mpi::Communicator comm_;
  std::unique_ptr<nsl::mpi::DataParallel<float>> parallel_;
};
#endif

int train_on_device(const nsl_train::Settings& s, nsl_train::Distributed& dist) {
  if (nsl::parse_device(s.device) == nsl::DeviceKind::cpu) return nsl_train::train<nsl::Cpu>(s, dist);
#if NSL_TRAIN_WITH_CUDA
  nsl::require(s.precise_bn <= 0, nsl::ErrorKind::argument,
               "--precise-bn is not implemented for --device cuda yet (train with --precise-bn 0, or on the CPU)");
  return train_on_cuda(s);
#else
  nsl::fail(nsl::ErrorKind::argument,
            "--device cuda: this nsl-train was built without the CUDA backend (configure with -DNSL_WITH_CUDA=ON)");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  nsl_train::Settings s;
  CLI::App app{"nsl-train: train the CNN-9 reference network with a neural similarity variant"};
  app.add_option("--variant", s.variant,
                 "plain, static_dns, static_uns, dynamic_dns, dynamic_uns, dynamic_dns_sphere, or sphere_attention "
                 "(the attention SphereNet, CPU only)")
      ->capture_default_str();
  app.add_option("--device", s.device, "cpu, or cuda (a GPU; needs a build with -DNSL_WITH_CUDA=ON)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--data", s.data, "dataset directory")->capture_default_str();
  app.add_option("--dataset", s.dataset, "fashion-mnist, cifar10 or cifar100")
      ->check(CLI::IsMember({"fashion-mnist", "cifar10", "cifar100"}))
      ->capture_default_str();
  app.add_option("--epochs", s.epochs, "epochs to train")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--batch", s.batch, "batch size")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--recipe", s.recipe,
                 "what --lr, --schedule, --warmup, --precise-bn, --augment and --predictor-gamma default to: auto "
                 "(good at any run length: lr 0.1, cosine, a warm-up of half the run up to 200 iterations, BN "
                 "statistics re-estimated on up to 100 batches, dynamic layers started plain; under 400 iterations "
                 "lr 0.05 and no augmentation) or reference (the paper's: lr 0.1, step, 200, moving averages, "
                 "predictor scale 1; made for long runs)")
      ->check(CLI::IsMember({"auto", "reference"}))
      ->capture_default_str();
  app.add_option("--lr", s.lr, "base learning rate (default: the recipe's)")->check(CLI::NonNegativeNumber);
  app.add_option("--schedule", s.schedule,
                 "step (x0.1 at 20/42.5, 30/42.5, 37.5/42.5 of the run) or cosine (default: the recipe's)")
      ->check(CLI::IsMember({"step", "cosine"}));
  app.add_option("--warmup", s.warmup,
                 "iterations of linear learning-rate warm-up (avoids the loss jump of lr 0.1 at the start; "
                 "see nsl/train/schedule.hpp; default: the recipe's)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--precise-bn", s.precise_bn,
                 "before each evaluation, re-estimate BatchNorm's running statistics on this many training "
                 "batches with the weights fixed (0: the moving averages; see nsl/train/precise_bn.hpp; default: "
                 "the recipe's)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--test-both-bn", s.test_both_bn,
               "with --precise-bn: first test with the moving-average statistics too (test_acc_moving_bn in "
               "metrics.jsonl), and keep them for training and the model file (the run's weights and moving "
               "averages are then those of a run without --precise-bn)");
  app.add_option("--predictor-gamma", s.predictor_gamma,
                 "start the similarity predictors' last BatchNorm scale here (dynamic_dns, dynamic_dns_sphere; "
                 "0: every dynamic layer starts as the plain convolution, see docs/training.md; with --resume the "
                 "model file's scales go on; default: the recipe's, auto 0, reference 1)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--predictor-lr", s.predictor_lr,
                 "the dynamic layers' similarity predictors learn at this multiple of the learning rate")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--predictor-decay", s.predictor_decay,
                 "the predictors' convolutions take this multiple of --weight-decay (10: what the authors' code "
                 "meant to apply, see docs/training.md)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--check-numerics,!--no-check-numerics", s.check_numerics,
               "after each step's backward, check the loss and the gradients (one pass over them): the first NaN "
               "or infinity stops the run before the update, naming the step and the first layer and parameter "
               "where it shows; the model file keeps the last finished epoch (on by default)")
      ->capture_default_str();
  app.add_option("--momentum", s.momentum, "SGD momentum")->check(CLI::Range(0.0, 0.999))->capture_default_str();
  app.add_option("--weight-decay", s.weight_decay, "L2 weight decay")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--label-smoothing", s.smoothing, "label smoothing")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--seed", s.seed, "random seed (initialisation, shuffling, augmentation)")->capture_default_str();
  app.add_option("--threads", s.threads, "threads (0: all cores; under mpirun, shared among the ranks on a machine)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--limit-train", s.limit_train, "use only the first N training images (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--limit-test", s.limit_test, "use only the first N test images (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--augment", s.augment,
                 "none, crop or crop-flip (default: crop for fashion-mnist, crop-flip for CIFAR; none in a short "
                 "run of --recipe auto)")
      ->check(CLI::IsMember({"none", "crop", "crop-flip"}));
  app.add_option("--log-every", s.log_every, "training steps between two rows of OUT/steps.jsonl")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--out", s.out, "output directory")->capture_default_str();
  app.add_option("--resume", s.resume,
                 "model file to continue from; with the same options (--epochs included) as the first run the "
                 "result is bit for bit that of an uninterrupted run");
  app.add_option("--stop-after", s.stop_after,
                 "stop after this epoch of the --epochs run (the schedule still spans --epochs); continue "
                 "later with --resume")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--sync-bn,!--no-sync-bn", s.sync_bn,
               "under mpirun: BatchNorm's batch statistics over every rank's share of the batch, so N ranks "
               "compute what one process does (on by default); --no-sync-bn: each rank its own")
      ->capture_default_str();
  app.add_option("--bucket-mb", s.bucket_mb,
                 "under mpirun: the gradients go into sums of about this many MB, each started as soon as "
                 "backward has finished its layers")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  // Under an MPI launcher: MPI for the whole run (the arguments are parsed
  // after it, so each rank's errors come after MPI is up).
#if NSL_TRAIN_WITH_MPI
  std::optional<nsl::mpi::Environment> mpi;
  if (nsl::mpi::launched()) mpi.emplace(argc, argv);
  std::unique_ptr<nsl_train::Distributed> dist =
      mpi ? std::unique_ptr<nsl_train::Distributed>(new MpiDistributed())
          : std::make_unique<nsl_train::Distributed>();
#else
  auto dist = std::make_unique<nsl_train::Distributed>();
#endif
  const int ranks = dist->ranks();
  if (ranks > 1 && !dist->root()) std::freopen("/dev/null", "w", stdout);  // rank 0 reports; errors still show
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = dist->root() ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 1);
    return status;  // every rank parses the same command line the same way
  }
  s.command = nsl::cli::command_line("nsl-train", argc, argv);
  const std::string name = ranks > 1 ? nsl::cat("nsl-train (rank ", dist->rank(), " of ", ranks, ")") : "nsl-train";
  const int status = nsl::cli::run_program(name.c_str(), [&] { return train_on_device(s, *dist); });
#if NSL_TRAIN_WITH_MPI
  // A rank that failed stops them all (the others may wait in a collective
  // for it): its one line above, then MPI's note that it aborted the run.
  if (status == 1 && ranks > 1) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  return status;
}
