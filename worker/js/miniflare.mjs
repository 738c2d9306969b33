// Runs the built worker under workerd (the miniflare 4 API, no Cloudflare account), or writes
// entries into a local KV directory that `wrangler dev --persist-to DIR` reads too.
//
//   node worker/js/miniflare.mjs serve '{"dir": BUNDLE, "persist": DIR?, "namespace": ID,
//        "bindings": {"EDGE_KEYS": ..., "REFRESH_SECONDS": "60"}, "port": 0}'
//     prints {"url": ...} once listening on 127.0.0.1, then takes one JSON command per stdin line
//     and answers each with one JSON line:
//       {"op": "put", "key": K, "file": PATH}   put a file's bytes under K
//       {"op": "delete", "key": K}
//       {"op": "scheduled"}                     fire the cron trigger
//       {"op": "pids"}                          workerd's process ids (for memory readings)
//     and stops when stdin closes.
//   node worker/js/miniflare.mjs put DIR NAMESPACE_ID KEY=FILE ...
//     puts each file under its key, in order, into DIR (a wrangler persist directory).
import { Miniflare } from "miniflare";
import { readFile } from "node:fs/promises";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const SHIM = "shim.mjs";

// A file's bytes as a standalone ArrayBuffer (a Node Buffer may be a view into a shared pool,
// which miniflare's proxy refuses to serialise).
async function bytesOf(file) {
  const buf = await readFile(file);
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

function options({ dir, persist, namespace, bindings, port, script }) {
  const base = {
    compatibilityDate: "2025-01-01",
    kvNamespaces: { SNAPSHOTS: { id: namespace } },
    bindings: bindings ?? {},
    cf: false,
    host: "127.0.0.1",
    port: port ?? 0,
    ...(persist ? { defaultPersistRoot: join(resolve(persist), "v3") } : {}),
  };
  if (script) return { ...base, modules: true, script };
  const root = resolve(dir);
  return {
    ...base,
    modules: true,
    scriptPath: join(root, SHIM),
    modulesRoot: root,
    modulesRules: [
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    // The worker's cron trigger; fired by the "scheduled" command here.
    triggers: { crons: ["*/5 * * * *"] },
  };
}

// workerd processes started by this node process.
function workerdPids() {
  const out = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid) out.push(Number(name));
    } catch {}
  }
  return out;
}

async function serve(config) {
  const mf = new Miniflare(options(config));
  const url = await mf.ready;
  const kv = await mf.getKVNamespace("SNAPSHOTS");
  process.stdout.write(JSON.stringify({ url: url.toString() }) + "\n");
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let reply;
    try {
      const cmd = JSON.parse(line);
      if (cmd.op === "put") {
        await kv.put(cmd.key, await bytesOf(cmd.file));
        reply = { ok: true };
      } else if (cmd.op === "delete") {
        await kv.delete(cmd.key);
        reply = { ok: true };
      } else if (cmd.op === "scheduled") {
        const worker = await mf.getWorker();
        const result = await worker.scheduled({ cron: "*/5 * * * *" });
        reply = { ok: true, outcome: result.outcome };
      } else if (cmd.op === "pids") {
        reply = { ok: true, pids: workerdPids() };
      } else {
        reply = { ok: false, error: `unknown op ${JSON.stringify(cmd.op)}` };
      }
    } catch (e) {
      reply = { ok: false, error: String(e && e.stack ? e.stack : e) };
    }
    process.stdout.write(JSON.stringify(reply) + "\n");
  }
  await mf.dispose();
}

async function put(dir, namespace, entries) {
  const script = "export default { fetch() { return new Response('') } }";
  const mf = new Miniflare(options({ persist: dir, namespace, script }));
  await mf.ready;
  const kv = await mf.getKVNamespace("SNAPSHOTS");
  for (const entry of entries) {
    const at = entry.indexOf("=");
    if (at < 1) throw new Error(`${entry}: expected KEY=FILE`);
    await kv.put(entry.slice(0, at), await bytesOf(entry.slice(at + 1)));
  }
  await mf.dispose();
}

const [mode, ...args] = process.argv.slice(2);
try {
  if (mode === "serve") await serve(JSON.parse(args[0]));
  else if (mode === "put") await put(args[0], args[1], args.slice(2));
  else throw new Error("usage: miniflare.mjs serve CONFIG_JSON | put DIR NAMESPACE_ID KEY=FILE...");
} catch (e) {
  process.stderr.write(`miniflare.mjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
}
