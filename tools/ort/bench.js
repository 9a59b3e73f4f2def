#!/usr/bin/env node
'use strict';
// Time a model in ONNX Runtime (CPU) on seeded uniform [0,1) random input for its (only, float)
// input, or on inputs read from files (any types, any number of inputs: token ids, masks).
//
// node tools/ort/bench.js MODEL.onnx [--shape 1,3,224,224] [--input NAME=x.npy ...] [--threads 1]
//                         [--iters 20] [--warmup 3] [--seed 42]
//                         [--opt-level disable|basic|extended|all] [--log-level 0-4 (default 3)]
//
// --shape defaults to the model's input shape when that is fully static; batch = shape[0] (with
// --input: the first dim of the first model input's file).
// Prints one JSON line: {"model","threads","batch","ms_per_run_median","ms_per_run_min",
// "images_per_second", plus "shape","input","iters","warmup","opt_level","ort_version"}.
// Exit codes: 2 usage, 3 model load, 4 input files, 5 run (one stderr line).

const { EXIT, die, parseArgs, parseIntFlag, sessionOptions, loadOrt, createSession, runMain } = require('./common');
const { numel } = require('./npy');
const { readInputs } = require('./inputs');

const USAGE = 'usage: node tools/ort/bench.js MODEL.onnx [--shape 1,3,224,224] [--input NAME=x.npy ...] [--threads N] [--iters N] ' +
  '[--warmup N] [--seed N] [--opt-level disable|basic|extended|all] [--log-level 0-4 (default 3)]';

// mulberry32: small, fast, deterministic PRNG returning floats in [0, 1).
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const round3 = (x) => Math.round(x * 1000) / 1000;

// Seeded uniform [0, 1) values for the model's only input, which must be float.
function randomFeeds(ort, session, shape, seed, model) {
  if (session.inputNames.length !== 1) {
    die(EXIT.USAGE, `random input needs a model with exactly one input (else pass --input); ${model} has ${session.inputNames.length} ` +
      `(${session.inputNames.join(', ')})`);
  }
  const meta = session.inputMetadata[0];
  const name = session.inputNames[0];
  if (!meta.isTensor || !['float32', 'float64'].includes(meta.type)) {
    die(EXIT.USAGE, `input '${name}' must be a float32 or float64 tensor (is ${meta.isTensor ? meta.type : 'non-tensor'})`);
  }
  if (!shape) {
    const dims = Array.from(meta.shape);
    if (dims.length === 0 || dims.some((d) => typeof d !== 'number' || d < 0)) {
      die(EXIT.USAGE, `input '${name}' has shape [${dims}] with symbolic or unknown dims; pass --shape`);
    }
    shape = dims;
  }

  const n = numel(shape);
  const data = meta.type === 'float32' ? new Float32Array(n) : new Float64Array(n);
  const rand = rng(seed);
  for (let i = 0; i < n; i++) data[i] = rand();
  return { [name]: new ort.Tensor(meta.type, data, shape) };
}

function fileFeeds(ort, specs, session) {
  const feeds = {};
  for (const [name, t] of readInputs(specs.map((spec) => ({ kind: 'npy', spec })), session.inputNames)) {
    try {
      feeds[name] = new ort.Tensor(t.type, t.data, t.shape);
    } catch (e) {
      die(EXIT.INPUT, `cannot make tensor for input '${name}': ${e.message}`);
    }
  }
  return feeds;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2), {
      shape: 'string', input: 'list', threads: 'string', iters: 'string', warmup: 'string', seed: 'string',
      'opt-level': 'string', 'log-level': 'string', help: 'bool',
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
  let options;
  let threads;
  let iters;
  let warmup;
  let seed;
  let shape = null;
  const optLevel = flags['opt-level'] || 'all';
  try {
    threads = parseIntFlag(flags.threads, 'threads', 1, 1);
    iters = parseIntFlag(flags.iters, 'iters', 20, 1);
    warmup = parseIntFlag(flags.warmup, 'warmup', 3, 0);
    seed = parseIntFlag(flags.seed, 'seed', 42, 0);
    options = sessionOptions({ threads, optLevel, logLevel: parseIntFlag(flags['log-level'], 'log-level', 3, 0) });
    if (flags.shape !== undefined) {
      if (!/^\d+(,\d+)*$/.test(flags.shape)) throw new Error(`--shape must look like 1,3,224,224, got '${flags.shape}'`);
      shape = flags.shape.split(',').map(Number);
    }
  } catch (e) {
    die(EXIT.USAGE, e.message);
  }

  const model = positional[0];
  const ort = loadOrt();
  const session = await createSession(ort, model, options);
  const fromFiles = flags.input.length > 0;
  const feeds = fromFiles ? fileFeeds(ort, flags.input, session) : randomFeeds(ort, session, shape, seed, model);
  const first = feeds[session.inputNames[0]];
  shape = Array.from(first.dims);

  const times = [];
  try {
    for (let i = 0; i < warmup; i++) await session.run(feeds);
    for (let i = 0; i < iters; i++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  } catch (e) {
    die(EXIT.RUN, `failed to run model ${model}: ${e.message}`);
  }
  const med = median(times);
  const batch = shape.length > 0 ? shape[0] : 1;
  const out = {
    model,
    threads,
    batch,
    ms_per_run_median: round3(med),
    ms_per_run_min: round3(Math.min(...times)),
    images_per_second: round3((batch * 1000) / med),
    shape,
    input: fromFiles ? session.inputNames.join(',') : session.inputNames[0],
    iters,
    warmup,
    opt_level: options.graphOptimizationLevel,
    ort_version: ort.env.versions.node,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

runMain(main, EXIT.RUN);
