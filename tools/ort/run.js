#!/usr/bin/env node
'use strict';
// Run an ONNX model in ONNX Runtime (CPU) and write every output as <out-dir>/<output_name>.npy.
//
// node tools/ort/run.js MODEL.onnx --input NAME=x.npy ... [--input-pb NAME=x.pb ...] --out-dir DIR
//                       [--threads 1] [--opt-level disable|basic|extended|all] [--log-level 0-4 (default 4)]
//
// NAME= may be left out: a .pb then feeds the input named in the TensorProto (if the model has
// it); otherwise unnamed files feed the model inputs not named explicitly, in model order.
// Prints one JSON line: {"outputs":[{"name","dims","type","file"}]}.
// Exit codes: 2 usage, 3 model load, 4 input files, 5 run, 6 writing outputs (one stderr line).

const fs = require('fs');
const path = require('path');
const { EXIT, die, parseArgs, parseIntFlag, sessionOptions, loadOrt, createSession, runMain } = require('./common');
const npy = require('./npy');
const { readInputs } = require('./inputs');

const USAGE = 'usage: node tools/ort/run.js MODEL.onnx --input NAME=file.npy ... [--input-pb NAME=file.pb ...] ' +
  '--out-dir DIR [--threads N] [--opt-level disable|basic|extended|all] [--log-level 0-4 (default 4)]';

// Output names may contain '/', ':' etc. (e.g. PyTorch exports); keep file names flat and safe.
function fileNameFor(name, used) {
  let base = name.replace(/[^A-Za-z0-9._-]/g, '_');
  if (base === '' || base === '.' || base === '..') base = `_${base}`;
  let candidate = base;
  for (let k = 1; used.has(candidate); k++) candidate = `${base}_${k}`;
  used.add(candidate);
  return `${candidate}.npy`;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2), {
      input: 'list', 'input-pb': 'list', 'out-dir': 'string', threads: 'string', 'opt-level': 'string',
      'log-level': 'string', help: 'bool',
    });
  } catch (e) {
    die(EXIT.USAGE, `${e.message}; ${USAGE}`);
  }
  const { positional, flags } = args;
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (positional.length !== 1) die(EXIT.USAGE, USAGE);
  if (!flags['out-dir']) die(EXIT.USAGE, `--out-dir is required; ${USAGE}`);
  let options;
  try {
    options = sessionOptions({
      threads: parseIntFlag(flags.threads, 'threads', 1, 1),
      optLevel: flags['opt-level'] || 'all',
      logLevel: parseIntFlag(flags['log-level'], 'log-level', 4, 0),
    });
  } catch (e) {
    die(EXIT.USAGE, e.message);
  }

  const model = positional[0];
  const ort = loadOrt();
  const session = await createSession(ort, model, options);

  const specs = [
    ...flags.input.map((spec) => ({ kind: 'npy', spec })),
    ...flags['input-pb'].map((spec) => ({ kind: 'pb', spec })),
  ];
  const tensors = readInputs(specs, session.inputNames);
  const feeds = {};
  for (const [name, t] of tensors) {
    try {
      feeds[name] = new ort.Tensor(t.type, t.data, t.shape);
    } catch (e) {
      die(EXIT.INPUT, `cannot make tensor for input '${name}': ${e.message}`);
    }
  }

  let results;
  try {
    results = await session.run(feeds);
  } catch (e) {
    die(EXIT.RUN, `failed to run model ${model}: ${e.message}`);
  }

  const outDir = flags['out-dir'];
  try {
    fs.mkdirSync(outDir, { recursive: true });
  } catch (e) {
    die(EXIT.OUTPUT, `cannot create ${outDir}: ${e.message}`);
  }
  const used = new Set();
  const outputs = [];
  for (const name of session.outputNames) {
    const t = results[name];
    if (!t || typeof t.type !== 'string' || !t.dims) die(EXIT.OUTPUT, `output '${name}' is not a tensor`);
    if (!npy.TYPES[t.type]) die(EXIT.OUTPUT, `output '${name}' has unsupported element type ${t.type}`);
    const file = path.join(outDir, fileNameFor(name, used));
    const dims = Array.from(t.dims, Number);
    try {
      npy.writeNpy(file, t.type, dims, t.data);
    } catch (e) {
      die(EXIT.OUTPUT, `cannot write ${file}: ${e.message}`);
    }
    outputs.push({ name, dims, type: t.type, file });
  }
  process.stdout.write(`${JSON.stringify({ outputs })}\n`);
}

runMain(main);
