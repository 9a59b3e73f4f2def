#!/usr/bin/env node
'use strict';
// Check that ONNX Runtime (CPU) loads a model; print its inputs and outputs as one JSON line:
//   {"model","ort_version","inputs":[{"name","type","dims"}],"outputs":[...]}
// Symbolic dimensions are strings, unknown rank is []. Exit 0 if it loads, 3 if not, 2 on usage.
//
// node tools/ort/check.js MODEL.onnx [--opt-level disable|basic|extended|all] [--log-level 0-4 (default 4)]

const { EXIT, die, parseArgs, parseIntFlag, sessionOptions, loadOrt, createSession, describeValue, runMain } = require('./common');

const USAGE = 'usage: node tools/ort/check.js MODEL.onnx [--opt-level disable|basic|extended|all] [--log-level 0-4 (default 4)]';

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2), { 'opt-level': 'string', 'log-level': 'string', help: 'bool' });
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
  try {
    options = sessionOptions({
      threads: 1, optLevel: flags['opt-level'] || 'all', logLevel: parseIntFlag(flags['log-level'], 'log-level', 4, 0),
    });
  } catch (e) {
    die(EXIT.USAGE, e.message);
  }
  const model = positional[0];
  const ort = loadOrt();
  const session = await createSession(ort, model, options);
  const out = {
    model,
    ort_version: ort.env.versions.node,
    inputs: session.inputMetadata.map(describeValue),
    outputs: session.outputMetadata.map(describeValue),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

runMain(main, EXIT.LOAD);
