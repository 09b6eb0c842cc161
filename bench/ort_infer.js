#!/usr/bin/env node
// ort_infer.js — times an ONNX model in ONNX Runtime (onnxruntime-node, CPU), the third column of
// bench/compare_pytorch.py's infer cases (see bench/README.md).
//
// usage: node bench/ort_infer.js --model MODEL.onnx [--batch B] [--threads N] [--warmup W]
//                                [--runs R] [--min-time S] [--input X.npy] [--output Y.npy]
//                                [--modules DIR]
//
// One CPU session (intra-op threads N, inter-op threads 1, sequential execution, every graph
// optimisation) on a float32 input of shape [B, 1, 28, 28] under the model's first input name:
// the images of --input (a float32 .npy file; its shape replaces B x 1 x 28 x 28), or random pixel
// values in [0, 255] from a fixed seed. W untimed runs, then timed runs, one at a time, until at
// least R runs and S seconds (default 0) have passed. Prints one JSON line:
//   {"median_ms", "min_ms", "runs", "warmup", "threads", "batch", "input_name", "output_name",
//    "output_shape"}
// median_ms and min_ms are over the single runs. --output writes the first output of the last run
// as a float32 .npy file (the agreement check). --modules DIR: a folder holding
// node_modules/onnxruntime-node (else Node's own module resolution).
"use strict";

const path = require("path");
// .npy files (float32, C order, little-endian): the ONNX test's reader and writer.
const npy = require(path.join(__dirname, "..", "tests", "onnx", "npy.js"));

function usage(message) {
  process.stderr.write(`ort_infer.js: ${message}\n`);
  process.stderr.write("usage: node ort_infer.js --model MODEL.onnx [--batch B] [--threads N] [--warmup W] " +
                       "[--runs R] [--min-time S] [--input X.npy] [--output Y.npy] [--modules DIR]\n");
  process.exit(2);
}

function parseArguments(argv) {
  const options = {model: null, batch: 1, threads: 1, warmup: 10, runs: 20, minTime: 0, input: null, output: null,
                   modules: null};
  const numeric = {"--batch": "batch", "--threads": "threads", "--warmup": "warmup", "--runs": "runs",
                   "--min-time": "minTime"};
  const text = {"--model": "model", "--input": "input", "--output": "output", "--modules": "modules"};
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].includes("=") ? argv[i].split(/=(.*)/s, 2) : [argv[i], undefined];
    if (!(flag in numeric) && !(flag in text)) usage(`unknown option '${argv[i]}'`);
    const value = inline !== undefined ? inline : argv[++i];
    if (value === undefined) usage(`${flag} needs a value`);
    if (flag in text) {
      options[text[flag]] = value;
    } else {
      const number = Number(value);
      const integer = flag !== "--min-time";
      if (!Number.isFinite(number) || number < 0 || (integer && !Number.isInteger(number)))
        usage(`${flag}: expected a ${integer ? "whole " : ""}number >= 0, got '${value}'`);
      options[numeric[flag]] = number;
    }
  }
  if (!options.model) usage("--model is required");
  if (options.batch < 1 || options.threads < 1 || options.runs < 1) usage("--batch, --threads and --runs must be >= 1");
  return options;
}

// ---- the run ----------------------------------------------------------------------------------

/// Pixel values in [0, 255] from a fixed-seed generator (mulberry32): the same input every run.
function randomImages(count) {
  let state = 20191030;
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    data[i] = 255 * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return data;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
}

async function main() {
  const options = parseArguments(process.argv.slice(2));
  const ort = require(options.modules ? path.resolve(options.modules, "node_modules", "onnxruntime-node")
                                      : "onnxruntime-node");
  const session = await ort.InferenceSession.create(options.model, {
    executionProviders: ["cpu"],
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
  });
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  const images = options.input ? npy.read(options.input)
                               : {data: randomImages(options.batch * 28 * 28), dims: [options.batch, 1, 28, 28]};
  const feeds = {[inputName]: new ort.Tensor("float32", images.data, images.dims)};

  let results = null;
  for (let i = 0; i < options.warmup; i++) results = await session.run(feeds);
  const times = [];
  const start = performance.now();
  while (times.length < options.runs || performance.now() - start < 1e3 * options.minTime) {
    const t0 = performance.now();
    results = await session.run(feeds);
    times.push(performance.now() - t0);
  }
  const output = results[outputName];
  if (options.output) npy.write(options.output, output.dims, output.data);
  console.log(JSON.stringify({
    median_ms: median(times), min_ms: Math.min(...times), runs: times.length, warmup: options.warmup,
    threads: options.threads, batch: images.dims[0], input_name: inputName, output_name: outputName,
    output_shape: Array.from(output.dims),
  }));
  await session.release();
}

main().catch((error) => {
  process.stderr.write(`ort_infer.js: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
