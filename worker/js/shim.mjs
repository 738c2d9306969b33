// The worker's entry module: instantiates the wasm-bindgen output (`--target bundler`) and
// exports the Rust `fetch` and `scheduled` handlers (what worker-build's shim does, without it).
import * as imports from "./index_bg.js";
import wasmModule from "./index_bg.wasm";

const instance = new WebAssembly.Instance(wasmModule, { "./index_bg.js": imports });
imports.__wbg_set_wasm(instance.exports);
instance.exports.__wbindgen_start();

export default {
  fetch: (req, env, ctx) => imports.fetch(req, env, ctx),
  scheduled: (event, env, ctx) => imports.scheduled(event, env, ctx),
};
