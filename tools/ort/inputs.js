'use strict';
// Model inputs from files, shared by run.js and bench.js: --input NAME=x.npy (or --input-pb
// NAME=x.pb). NAME= may be left out: a .pb then feeds the input named in the TensorProto (if the
// model has it); otherwise unnamed files feed the model inputs not named explicitly, in model order.

const { EXIT, die } = require('./common');
const npy = require('./npy');

function splitSpec(spec) {
  const eq = spec.indexOf('=');
  return eq > 0 ? { name: spec.slice(0, eq), file: spec.slice(eq + 1) } : { name: null, file: spec };
}

function readInputs(specs, inputNames) {
  const known = new Set(inputNames);
  const named = new Map(); // input name -> tensor
  const unnamed = [];
  for (const { kind, spec } of specs) {
    let { name, file } = splitSpec(spec);
    let t;
    try {
      if (kind === 'pb') {
        t = require('./tensorproto').readTensorProto(file);
        if (!name && t.name && known.has(t.name)) name = t.name;
      } else {
        t = npy.readNpy(file);
      }
    } catch (e) {
      die(EXIT.INPUT, `cannot read input: ${e.message}`);
    }
    if (!name) {
      unnamed.push({ file, t });
      continue;
    }
    if (!known.has(name)) die(EXIT.INPUT, `model has no input '${name}' (inputs: ${inputNames.join(', ')})`);
    if (named.has(name)) die(EXIT.INPUT, `input '${name}' given twice`);
    named.set(name, t);
  }
  const free = inputNames.filter((n) => !named.has(n));
  if (unnamed.length > free.length) {
    die(EXIT.INPUT, `${unnamed.length} unnamed input files but only ${free.length} model inputs left (${free.join(', ')})`);
  }
  unnamed.forEach((u, i) => named.set(free[i], u.t));
  const missing = inputNames.filter((n) => !named.has(n));
  if (missing.length) die(EXIT.INPUT, `missing model inputs: ${missing.join(', ')}`);
  return named;
}

module.exports = { readInputs };
