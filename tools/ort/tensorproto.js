'use strict';
// Read a serialized onnx.TensorProto (.pb, as in the ONNX backend test data) into
// {name, type, shape, data} with an ORT element type name and a fresh, aligned TypedArray.
// Uses protobufjs with the onnx.proto shipped by libonnx-dev (override with $ONNX_PROTO).

const fs = require('fs');
const { TYPES, numel } = require('./npy');

const PROTO_CANDIDATES = ['/usr/include/onnx/onnx.proto', '/usr/include/onnx/onnx-ml.proto'];

// onnx.TensorProto.DataType -> ORT type name
const ONNX_TYPES = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64',
  9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64',
};
const ONNX_TYPE_NAMES = {
  0: 'UNDEFINED', 8: 'STRING', 14: 'COMPLEX64', 15: 'COMPLEX128', 16: 'BFLOAT16',
  17: 'FLOAT8E4M3FN', 18: 'FLOAT8E4M3FNUZ', 19: 'FLOAT8E5M2', 20: 'FLOAT8E5M2FNUZ', 21: 'UINT4', 22: 'INT4',
};

let tensorType = null;

function protoPath() {
  if (process.env.ONNX_PROTO) return process.env.ONNX_PROTO;
  const found = PROTO_CANDIDATES.find((p) => fs.existsSync(p));
  if (!found) {
    throw new Error(`no onnx.proto found (tried ${PROTO_CANDIDATES.join(', ')}); ` +
      'apt-get install -y libonnx-dev or set ONNX_PROTO');
  }
  return found;
}

function getTensorType() {
  if (!tensorType) {
    const protobuf = require('protobufjs');
    tensorType = protobuf.loadSync(protoPath()).lookupType('onnx.TensorProto');
  }
  return tensorType;
}

const toNumber = (v) => (typeof v === 'number' ? v : Number(v.toString()));
const toBigInt = (v) => (typeof v === 'number' ? BigInt(v) : BigInt(v.toString()));

const HINT = ' (not a TensorProto? SequenceProto/OptionalProto/MapProto files are not supported)';

function parseTensorProto(bytes, file = '<buffer>') {
  let msg;
  try {
    msg = getTensorType().decode(bytes);
  } catch (e) {
    throw new Error(`${file}: cannot decode: ${e.message}${HINT}`);
  }
  const code = msg.dataType;
  const type = ONNX_TYPES[code];
  if (!type) throw new Error(`${file}: unsupported TensorProto data_type ${ONNX_TYPE_NAMES[code] || code}${code ? '' : HINT}`);
  if (msg.dataLocation === 1) throw new Error(`${file}: tensors with external data are not supported`);
  if (msg.segment) throw new Error(`${file}: segmented tensors are not supported${HINT}`);
  const shape = (msg.dims || []).map(toNumber);
  const n = numel(shape);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0) || n > 2 ** 32) {
    throw new Error(`${file}: implausible dims [${shape}]${HINT}`);
  }
  const [, size, Ctor] = TYPES[type];
  let data;
  if (msg.rawData && msg.rawData.length > 0) {
    if (msg.rawData.length !== n * size) {
      throw new Error(`${file}: raw_data has ${msg.rawData.length} bytes, expected ${n * size} for ${type}[${shape}]`);
    }
    const ab = new ArrayBuffer(n * size); // copy: raw_data may be unaligned
    new Uint8Array(ab).set(msg.rawData);
    data = new Ctor(ab);
  } else {
    let src;
    if (type === 'float32') src = msg.floatData;
    else if (type === 'float64') src = msg.doubleData;
    else if (type === 'int64') src = msg.int64Data;
    else if (type === 'uint32' || type === 'uint64') src = msg.uint64Data;
    else src = msg.int32Data; // int8/16/32, uint8/16, bool, float16 (bits)
    src = src || [];
    if (src.length !== n) throw new Error(`${file}: has ${src.length} elements, expected ${n} for ${type}[${shape}]`);
    data = new Ctor(n);
    const big = type === 'int64' || type === 'uint64';
    for (let i = 0; i < n; i++) data[i] = big ? toBigInt(src[i]) : toNumber(src[i]);
  }
  return { name: msg.name || '', type, shape, data };
}

function readTensorProto(file) {
  return parseTensorProto(fs.readFileSync(file), file);
}

module.exports = { readTensorProto, parseTensorProto, protoPath };
