// Times bench_decide in V8 (node): meshver's decision path inside the VM, no host calls.
// Usage: node bench/decide-wasm/run.mjs target/wasm32-wasip1/release/meshver_bench_decide_wasm.wasm
import { readFileSync } from "node:fs";

const bytes = readFileSync(process.argv[2]);
const module = await WebAssembly.compile(bytes);
// Every import (WASI, proxy-wasm host calls) is a stub: the timed code calls none of them.
const imports = {};
for (const { module: m, name, kind } of WebAssembly.Module.imports(module)) {
  if (kind !== "function") continue;
  (imports[m] ??= {})[name] = () => 0;
}
const { exports } = await WebAssembly.instantiate(module, imports);
const result = {};
for (const fn of ["bench_decide", "bench_decide_with_map"]) {
  exports[fn](20000); // warm-up: lets V8 tier up to optimised code
  const times = [];
  for (let i = 0; i < 7; i++) {
    const t0 = process.hrtime.bigint();
    const n = exports[fn](20000);
    if (n === 0) throw new Error(`${fn}: setup failed`);
    times.push(Number(process.hrtime.bigint() - t0) / n);
  }
  times.sort((a, b) => a - b);
  result[fn + "_ns_per_request"] = Math.round(times[3]);
}
console.log(JSON.stringify(result));
