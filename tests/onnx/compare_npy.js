// tests/onnx/compare_npy.js — compares two float32 .npy tensors of N rows
// (logits or other outputs, N x D): the largest absolute difference
// relative to the largest |value| of the reference, and (with --argmax)
// whether every row's largest entry (the class decision) is the same.
//
//   node compare_npy.js REFERENCE.npy OTHER.npy TOLERANCE [--argmax] [LABEL]
//
// Prints one line "LABEL: max |diff| D = R x max |reference| M, argmax k/N"
// and exits 1 when R > TOLERANCE, the shapes differ, or a decision differs.
'use strict';
const npy = require('./npy.js');

const [referencePath, otherPath, toleranceText, ...rest] = process.argv.slice(2);
const argmax = rest.includes('--argmax');
const label = rest.filter((a) => a !== '--argmax')[0] || otherPath;
const tolerance = Number(toleranceText);
const reference = npy.read(referencePath);
const other = npy.read(otherPath);
let ok = true;
if (reference.dims.join('x') !== other.dims.join('x')) {
  console.log(`${label}: shapes differ: [${reference.dims}] and [${other.dims}]`);
  process.exit(1);
}
let scale = 0, diff = 0;
for (let i = 0; i < reference.data.length; ++i) {
  scale = Math.max(scale, Math.abs(reference.data[i]));
  const d = Math.abs(reference.data[i] - other.data[i]);
  diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
}
const relative = diff / Math.max(scale, 1e-30);
ok = relative <= tolerance;
let line = `${label}: max |diff| ${diff.toExponential(2)} = ${relative.toExponential(2)} x max |reference| ` +
           `${scale.toPrecision(4)} (tolerance ${tolerance})`;
if (argmax) {
  const rows = reference.dims[0], width = reference.data.length / rows;
  const best = (data, r) => {
    let b = 0;
    for (let j = 1; j < width; ++j) if (data[r * width + j] > data[r * width + b]) b = j;
    return b;
  };
  let agree = 0;
  for (let r = 0; r < rows; ++r) agree += best(reference.data, r) === best(other.data, r) ? 1 : 0;
  line += `, same class for ${agree}/${rows} images`;
  ok = ok && agree === rows;
}
console.log(line);
process.exit(ok ? 0 : 1);
