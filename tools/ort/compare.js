#!/usr/bin/env node
'use strict';
// Compare two tensors (.npy or TensorProto .pb, told apart by content) elementwise:
//   node tools/ort/compare.js ACTUAL EXPECTED [--rtol 1e-3] [--atol 1e-7]
// Floats match when |a - e| <= atol + rtol * |e| (NaN matches NaN; numpy.allclose, ONNX backend
// test defaults); integers and bools must be equal. Element types and dims must be the same.
// Prints one JSON line {"match","type","dims","count","mismatches","max_abs_diff","max_rel_diff",
// "first_mismatch"}. Exit 0 match, 1 mismatch, 2 usage, 4 unreadable file.

const fs = require('fs');
const { EXIT, die, parseArgs, runMain } = require('./common');
const npy = require('./npy');

const USAGE = 'usage: node tools/ort/compare.js ACTUAL EXPECTED [--rtol 1e-3] [--atol 1e-7]';

function readTensor(file) {
  try {
    const buf = fs.readFileSync(file);
    if (buf.length >= 6 && buf[0] === 0x93 && buf.toString('latin1', 1, 6) === 'NUMPY') return npy.parseNpy(buf, file);
    return require('./tensorproto').parseTensorProto(buf, file);
  } catch (e) {
    die(EXIT.INPUT, `cannot read ${file}: ${e.message}`);
  }
  return null;
}

// IEEE half bits -> number
function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function parseTol(v, name, def) {
  if (v === undefined) return def;
  const x = Number(v);
  if (!Number.isFinite(x) || x < 0) die(EXIT.USAGE, `--${name} must be a non-negative number`);
  return x;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2), { rtol: 'string', atol: 'string' });
  } catch (e) {
    die(EXIT.USAGE, `${e.message}; ${USAGE}`);
  }
  const { positional, flags } = args;
  if (positional.length !== 2) die(EXIT.USAGE, USAGE);
  const rtol = parseTol(flags.rtol, 'rtol', 1e-3);
  const atol = parseTol(flags.atol, 'atol', 1e-7);
  const a = readTensor(positional[0]);
  const e = readTensor(positional[1]);
  const report = { match: false, type: a.type, dims: a.shape };
  if (a.type !== e.type) {
    report.error = `element types differ: ${a.type} vs ${e.type}`;
  } else if (a.shape.length !== e.shape.length || a.shape.some((d, i) => d !== e.shape[i])) {
    report.error = `dims differ: [${a.shape}] vs [${e.shape}]`;
  } else {
    const isFloat = ['float16', 'float32', 'float64'].includes(a.type);
    if (a.type === 'float16') {
      a.data = Float64Array.from(a.data, halfToFloat);
      e.data = Float64Array.from(e.data, halfToFloat);
    }
    let mismatches = 0;
    let first = null;
    let maxAbs = 0;
    let maxRel = 0;
    for (let i = 0; i < a.data.length; i++) {
      const x = a.data[i];
      const y = e.data[i];
      let ok;
      if (isFloat) {
        const bothNaN = Number.isNaN(x) && Number.isNaN(y);
        const d = Math.abs(x - y);
        ok = bothNaN || x === y || d <= atol + rtol * Math.abs(y);
        if (!bothNaN && x !== y) {
          if (!(d <= maxAbs)) maxAbs = d; // NaN propagates
          const r = d / Math.abs(y);
          if (y !== 0 && !(r <= maxRel)) maxRel = r;
        }
      } else {
        ok = x === y;
        if (!ok) {
          const d = Math.abs(Number(x) - Number(y));
          if (d > maxAbs) maxAbs = d;
        }
      }
      if (!ok) {
        mismatches++;
        if (first === null) first = { index: i, actual: String(x), expected: String(y) };
      }
    }
    Object.assign(report, {
      match: mismatches === 0, count: a.data.length, mismatches, max_abs_diff: maxAbs, max_rel_diff: maxRel,
      first_mismatch: first,
    });
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(report.match ? 0 : 1);
}

runMain(main, EXIT.USAGE);
