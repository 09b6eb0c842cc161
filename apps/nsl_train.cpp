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
#include <CLI/CLI.hpp>

#include "nsl_train.hpp"

#if NSL_TRAIN_WITH_CUDA
int train_on_cuda(const nsl_train::Settings& s);  // nsl_train_cuda.cu
#endif

namespace {

int train_on_device(const nsl_train::Settings& s) {
  if (nsl::parse_device(s.device) == nsl::DeviceKind::cpu) return nsl_train::train<nsl::Cpu>(s);
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
  app.add_option("--threads", s.threads, "threads (0: all cores)")->check(CLI::NonNegativeNumber)->capture_default_str();
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
  CLI11_PARSE(app, argc, argv);
  s.command = nsl::cli::command_line("nsl-train", argc, argv);
  return nsl::cli::run_program("nsl-train", [&] { return train_on_device(s); });
}
