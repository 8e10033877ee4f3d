// Times functions of a module compiled from meshver's core to wasm32 in V8 (node: the engine
// Envoy runs meshver on), with no host call in the timed code.
// Usage: node bench/v8.mjs MODULE.wasm CALLS
//   CALLS: JSON, [{"label": ..., "fn": ..., "args": [...], "rounds": N}]. Each function is called
//   as fn(...args, rounds) and returns how many units of work it did (0: its setup failed).
// Prints {label: median ns per unit of 7 timed calls, after one call that lets V8 tier up}.
import { readFileSync } from "node:fs";

const bytes = readFileSync(process.argv[2]);
const calls = JSON.parse(process.argv[3]);
const module = await WebAssembly.compile(bytes);
// Every import (WASI, proxy-wasm host calls) is a stub: the timed code calls none of them.
const imports = {};
for (const { module: m, name, kind } of WebAssembly.Module.imports(module)) {
  if (kind !== "function") continue;
  (imports[m] ??= {})[name] = () => 0;
}
const { exports } = await WebAssembly.instantiate(module, imports);
const result = {};
for (const { label, fn, args = [], rounds } of calls) {
  exports[fn](...args, rounds); // warm-up
  const times = [];
  for (let i = 0; i < 7; i++) {
    const t0 = process.hrtime.bigint();
    const n = exports[fn](...args, rounds);
    if (n === 0) throw new Error(`${label}: ${fn} failed`);
    times.push(Number(process.hrtime.bigint() - t0) / n);
  }
  times.sort((a, b) => a - b);
  result[label] = Math.round(times[3]);
}
console.log(JSON.stringify(result));
