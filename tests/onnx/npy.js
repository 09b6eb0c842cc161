// tests/onnx/npy.js — reads and writes NumPy .npy files of little-endian
// float32 in C order (the only kind the ONNX test exchanges), format
// versions 1-3: the magic "\x93NUMPY", the version, the header's length
// (2 bytes in version 1, 4 after), a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (a, b, ...), } padded
// with spaces and a newline to a multiple of 64 bytes, then the data.
'use strict';
const fs = require('fs');

function read(path) {
  const bytes = fs.readFileSync(path);
  if (bytes.length < 10 || bytes.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${path}: not a .npy file`);
  const major = bytes[6];
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = bytes.toString('latin1', start, start + headerLength);
  const descr = /'descr':\s*'([^']*)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) throw new Error(`${path}: malformed .npy header ${JSON.stringify(header)}`);
  if (descr[1] !== '<f4' || fortran[1] !== 'False')
    throw new Error(`${path}: expected C-order little-endian float32 ('<f4'), got '${descr[1]}', fortran_order ${fortran[1]}`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const offset = start + headerLength;
  if (bytes.length !== offset + 4 * count) throw new Error(`${path}: expected ${count} floats after the header`);
  const data = new Float32Array(count);
  for (let i = 0; i < count; ++i) data[i] = bytes.readFloatLE(offset + 4 * i);
  return { dims, data };
}

function write(path, dims, data) {
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const unpadded = 10 + header.length + 1;  // magic, version, length, header, newline
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const out = Buffer.alloc(10 + header.length + 4 * data.length);
  out.write('\x93NUMPY', 0, 'latin1');
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, 'latin1');
  for (let i = 0; i < data.length; ++i) out.writeFloatLE(data[i], 10 + header.length + 4 * i);
  fs.writeFileSync(path, out);
}

module.exports = { read, write };
