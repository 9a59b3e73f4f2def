'use strict';
// Minimal NumPy .npy reader/writer (format versions 1.0, 2.0 and 3.0; little-endian or
// byte-order-free dtypes; C order only). Element types are named as in ONNX Runtime's JS API.
//
//   const npy = require('./npy');
//   const {type, shape, data} = npy.readNpy('x.npy');   // data: a fresh, aligned TypedArray
//   npy.writeNpy('y.npy', 'float32', [2, 3], new Float32Array(6));

const fs = require('fs');

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"

// ORT type name -> [npy descr, bytes per element, TypedArray constructor]
const TYPES = {
  float32: ['<f4', 4, Float32Array],
  float64: ['<f8', 8, Float64Array],
  float16: ['<f2', 2, Uint16Array], // raw IEEE half bits
  int8: ['|i1', 1, Int8Array],
  uint8: ['|u1', 1, Uint8Array],
  int16: ['<i2', 2, Int16Array],
  uint16: ['<u2', 2, Uint16Array],
  int32: ['<i4', 4, Int32Array],
  uint32: ['<u4', 4, Uint32Array],
  int64: ['<i8', 8, BigInt64Array],
  uint64: ['<u8', 8, BigUint64Array],
  bool: ['|b1', 1, Uint8Array],
};

// npy descr (byte-order char stripped) -> ORT type name
const DESCR_TO_TYPE = {};
for (const [t, [d]] of Object.entries(TYPES)) DESCR_TO_TYPE[d.slice(1)] = t;

function numel(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

function parseHeader(header, file) {
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(header);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) {
    throw new Error(`${file}: unsupported .npy header ${JSON.stringify(header.trim())}`);
  }
  if (fortran[1] !== 'False') throw new Error(`${file}: fortran_order True is not supported`);
  const d = descr[1];
  const order = d[0];
  const code = d.slice(1);
  const type = DESCR_TO_TYPE[code];
  if (!type || !'<|='.includes(order) || (order === '|' && TYPES[type][1] !== 1)) {
    throw new Error(`${file}: unsupported dtype '${d}' (little-endian numeric or bool only)`);
  }
  const dims = shape[1]
    .split(',')
    .map((s) => s.trim().replace(/L$/, ''))
    .filter((s) => s.length > 0)
    .map((s) => {
      if (!/^\d+$/.test(s)) throw new Error(`${file}: bad shape entry '${s}'`);
      return Number(s);
    });
  return { type, shape: dims };
}

// Parse .npy bytes. Returns {type, shape, data}; data is a copy (aligned, owned).
function parseNpy(buf, file = '<buffer>') {
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) throw new Error(`${file}: not a .npy file`);
  const major = buf[6];
  let headerLen;
  let offset;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    offset = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new Error(`${file}: truncated .npy header`);
    headerLen = buf.readUInt32LE(8);
    offset = 12;
  } else {
    throw new Error(`${file}: unsupported .npy version ${major}.${buf[7]}`);
  }
  if (buf.length < offset + headerLen) throw new Error(`${file}: truncated .npy header`);
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', offset, offset + headerLen);
  const { type, shape } = parseHeader(header, file);
  const [, size, Ctor] = TYPES[type];
  const start = offset + headerLen;
  const nbytes = numel(shape) * size;
  if (buf.length - start !== nbytes) {
    throw new Error(`${file}: expected ${nbytes} data bytes for ${type}[${shape}], found ${buf.length - start}`);
  }
  const ab = new ArrayBuffer(nbytes);
  new Uint8Array(ab).set(buf.subarray(start, start + nbytes));
  return { type, shape, data: new Ctor(ab) };
}

function readNpy(file) {
  return parseNpy(fs.readFileSync(file), file);
}

// Serialize to .npy bytes (v1.0, or v2.0 if the header does not fit).
function formatNpy(type, shape, data) {
  const t = TYPES[type];
  if (!t) throw new Error(`cannot write element type '${type}' to .npy`);
  const [descr, size] = t;
  const n = numel(shape);
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.length !== n * size) {
    throw new Error(`data has ${bytes.length} bytes, expected ${n * size} for ${type}[${shape}]`);
  }
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  let major = 1;
  let prefix = 10;
  if (dict.length + 1 + prefix > 0xffff) {
    major = 2;
    prefix = 12;
  }
  const total = Math.ceil((prefix + dict.length + 1) / 64) * 64;
  dict = dict + ' '.repeat(total - prefix - dict.length - 1) + '\n';
  const head = Buffer.alloc(prefix);
  MAGIC.copy(head, 0);
  head[6] = major;
  head[7] = 0;
  if (major === 1) head.writeUInt16LE(dict.length, 8);
  else head.writeUInt32LE(dict.length, 8);
  return Buffer.concat([head, Buffer.from(dict, 'latin1'), bytes]);
}

function writeNpy(file, type, shape, data) {
  fs.writeFileSync(file, formatNpy(type, shape, data));
}

module.exports = { TYPES, numel, parseNpy, readNpy, formatNpy, writeNpy };
