#!/usr/bin/env node
'use strict';
// Which kernels ONNX Runtime (CPU) actually runs after its graph optimizations: saves the
// optimized model (session option optimizedModelFilePath) and counts its node op types.
//
// node tools/ort/fused_ops.js MODEL.onnx [--opt-level basic|extended|all (default all)] [--save OUT.onnx]
//
// Prints one JSON line: {"model","ort_version","ir_version","opset","opt_level","nodes","ops":{"QLinearConv":20,
// "com.microsoft:QLinearAdd":8,...}} (ops of a non-default domain are prefixed with it).
// Exit codes: 2 usage, 3 model load, 5 reading the optimized model (one stderr line).

const fs = require('fs');
const os = require('os');
const path = require('path');
const { EXIT, die, parseArgs, sessionOptions, loadOrt, createSession, runMain } = require('./common');
const { protoPath } = require('./tensorproto');

const USAGE = 'usage: node tools/ort/fused_ops.js MODEL.onnx [--opt-level basic|extended|all] [--save OUT.onnx]';

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2), { 'opt-level': 'string', save: 'string', help: 'bool' });
  } catch (e) {
    die(EXIT.USAGE, `${e.message}; ${USAGE}`);
  }
  const { positional, flags } = args;
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (positional.length !== 1) die(EXIT.USAGE, USAGE);
  const optLevel = flags['opt-level'] || 'all';
  let options;
  try {
    options = sessionOptions({ threads: 1, optLevel, logLevel: 4 });
  } catch (e) {
    die(EXIT.USAGE, e.message);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nnc-fused-'));
  const saved = flags.save || path.join(tmp, 'optimized.onnx');
  options.optimizedModelFilePath = saved;
  const model = positional[0];
  const ort = loadOrt();
  try {
    await createSession(ort, model, options);
    let modelType;
    try {
      const protobuf = require('protobufjs');
      modelType = protobuf.loadSync(protoPath()).lookupType('onnx.ModelProto');
    } catch (e) {
      die(EXIT.RUN, `cannot load onnx.proto: ${e.message}`);
    }
    const decoded = modelType.decode(fs.readFileSync(saved));
    const ops = {};
    const nodes = decoded.graph.node || [];
    for (const n of nodes) {
      const key = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}:${n.opType}` : n.opType;
      ops[key] = (ops[key] || 0) + 1;
    }
    const sorted = Object.fromEntries(Object.entries(ops).sort(([a], [b]) => a.localeCompare(b)));
    process.stdout.write(`${JSON.stringify({
      model,
      ort_version: ort.env.versions.node,
      ir_version: Number(decoded.irVersion),
      opset: Number((decoded.opsetImport || []).find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0),
      opt_level: optLevel,
      nodes: nodes.length,
      ops: sorted,
    })}\n`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

runMain(main, EXIT.RUN);
