// tests/onnx/run_ort.js — runs an ONNX model in ONNX Runtime (the
// onnxruntime-node package, CPU) on the float32 tensor of a .npy file and
// writes the model's (first) output as a .npy file.
//
//   NODE_PATH=BUILD/ort/node_modules node run_ort.js MODEL.onnx INPUT.npy OUTPUT.npy
//
// Prints the input and output names and shapes. Exit status 1 on any error.
'use strict';
const npy = require('./npy.js');

async function main() {
  const [modelPath, inputPath, outputPath] = process.argv.slice(2);
  if (!outputPath) throw new Error('usage: node run_ort.js MODEL.onnx INPUT.npy OUTPUT.npy');
  const ort = require('onnxruntime-node');
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 2, interOpNumThreads: 1 });
  const input = npy.read(inputPath);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', input.data, input.dims) };
  const results = await session.run(feeds);
  const output = results[session.outputNames[0]];
  npy.write(outputPath, output.dims, output.data);
  console.log(`run_ort: ${modelPath}: ${session.inputNames[0]} [${input.dims}] -> ` +
              `${session.outputNames[0]} [${output.dims}] into ${outputPath}`);
}

main().catch((e) => {
  console.error(`run_ort: ${e.message || e}`);
  process.exit(1);
});
