'use strict';
// Shared helpers for the ONNX Runtime scripts: argument parsing, one-line errors, session setup.

const EXIT = { USAGE: 2, LOAD: 3, INPUT: 4, RUN: 5, OUTPUT: 6 };

function oneLine(s) {
  return String(s).replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

// Print one line to stderr and exit with `code`.
function die(code, msg) {
  process.stderr.write(`${oneLine(msg)}\n`);
  process.exit(code);
}

// Parse argv. spec: {flagName: 'string' | 'list' | 'bool'}. Accepts `--f v` and `--f=v`.
// Returns {positional: [...], flags: {...}}; throws Error on unknown/missing values.
function parseArgs(argv, spec) {
  const positional = [];
  const flags = {};
  for (const [k, kind] of Object.entries(spec)) if (kind === 'list') flags[k] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--') || a === '--') {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
    const kind = spec[key];
    if (!kind) throw new Error(`unknown option --${key}`);
    if (kind === 'bool') {
      if (eq > 0) throw new Error(`option --${key} takes no value`);
      flags[key] = true;
      continue;
    }
    let val;
    if (eq > 0) val = a.slice(eq + 1);
    else if (i + 1 < argv.length) val = argv[++i];
    else throw new Error(`option --${key} needs a value`);
    if (kind === 'list') flags[key].push(val);
    else flags[key] = val;
  }
  return { positional, flags };
}

function parseIntFlag(value, name, def, min = 0) {
  if (value === undefined) return def;
  if (!/^\d+$/.test(value) || Number(value) < min) throw new Error(`--${name} must be an integer >= ${min}`);
  return Number(value);
}

const OPT_LEVELS = {
  disable: 'disabled', disabled: 'disabled', basic: 'basic', extended: 'extended', layout: 'layout', all: 'all',
};

// logLevel: ORT severity 0 verbose .. 3 error, 4 fatal. At 3 ORT also prints load/run errors to stderr
// itself (with colour codes) before we report the same message; run.js and check.js use 4 so a
// failure is exactly one stderr line.
function sessionOptions({ threads = 1, optLevel = 'all', logLevel = 3 } = {}) {
  const level = OPT_LEVELS[optLevel];
  if (!level) throw new Error(`--opt-level must be one of disable|basic|extended|all, got '${optLevel}'`);
  if (![0, 1, 2, 3, 4].includes(logLevel)) throw new Error(`--log-level must be 0..4, got '${logLevel}'`);
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: level,
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    logSeverityLevel: logLevel,
  };
}

function loadOrt() {
  try {
    return require('onnxruntime-node');
  } catch (e) {
    die(EXIT.LOAD, `cannot load onnxruntime-node (run 'ONNXRUNTIME_NODE_INSTALL=skip npm ci' in the repo root): ${e.message}`);
  }
  return null;
}

// Create a session or exit with EXIT.LOAD and ORT's message.
async function createSession(ort, model, options) {
  try {
    return await ort.InferenceSession.create(model, options);
  } catch (e) {
    die(EXIT.LOAD, `failed to load model ${model}: ${e.message}`);
  }
  return null;
}

// Metadata of one input/output as plain JSON: {name, type, dims}; symbolic dims stay strings.
function describeValue(meta) {
  if (!meta.isTensor) return { name: meta.name, type: 'non-tensor', dims: null };
  return { name: meta.name, type: meta.type, dims: Array.from(meta.shape) };
}

// Run an async main; unexpected exceptions become one stderr line and `code`.
function runMain(main, code = 1) {
  main().catch((e) => die(code, e && e.message ? e.message : String(e)));
}

module.exports = {
  EXIT, oneLine, die, parseArgs, parseIntFlag, sessionOptions, loadOrt, createSession, describeValue, runMain,
};
