//! The worker's event handlers and the isolate's one piece of state: the snapshot that serves,
//! plus what the last KV check found. Every handler answers with JSON; nothing panics.

use scorer::score::{Format, ScoreError, Scorer, error_response};
use scorer::snapshot::{EdgeKey, Snapshot, edge_keys_from_text};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::VecDeque;
use tollgate_kv::{Assembly, LAYOUT_PARTS, LayoutError, MANIFEST_KEY, Manifest};
use worker::js_sys::{ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Context, Date, Env, Method, Request, Response, ScheduleContext, ScheduledEvent, event};

/// The KV namespace binding that holds the snapshot.
const KV_BINDING: &str = "SNAPSHOTS";
/// The var (a secret in production) holding the trusted edge key file(s), concatenated.
const EDGE_KEYS_VAR: &str = "EDGE_KEYS";
/// The var with the least number of seconds between two checks of KV.
const REFRESH_VAR: &str = "REFRESH_SECONDS";
const DEFAULT_REFRESH_SECONDS: f64 = 60.0;
/// The var with the most bytes of entity table parts kept loaded (a snapshot in parts).
const PART_BUDGET_VAR: &str = "PART_BUDGET_BYTES";
const DEFAULT_PART_BUDGET_BYTES: usize = 48 << 20;
/// Largest body of `/v1/score` and of `/v1/score/batch`.
const MAX_REQUEST_BYTES: usize = 64 << 10;
const MAX_BATCH_BYTES: usize = 8 << 20;

self_cell::self_cell!(
    /// A verified snapshot's bytes and the scorer that reads them in place.
    struct Loaded {
        owner: Vec<u8>,
        #[covariant]
        dependent: Scorer,
    }
);

/// The isolate's state. Never borrowed across an `.await`.
#[derive(Default)]
struct State {
    loaded: Option<Loaded>,
    /// Content version (BLAKE3 hex) of the snapshot that serves.
    version: Option<String>,
    loaded_at_ms: Option<u64>,
    checked_at_ms: Option<u64>,
    checking: bool,
    loads: u64,
    /// The last version refused by verification, and why: not fetched again.
    refused: Option<(String, String)>,
    /// Why the last check failed before verification (KV, layout), if it did.
    last_error: Option<String>,
    /// The serving snapshot's manifest when it is in parts (layout 2): where its parts are.
    parts_manifest: Option<Manifest>,
    /// The loaded parts (entity kind, part, bytes), least recently used first: evicted in that
    /// order.
    parts_loaded: VecDeque<(usize, usize, usize)>,
    /// Bytes of the loaded parts.
    parts_bytes: usize,
    /// Parts fetched from KV since start.
    parts_fetched: u64,
    /// Parts that requests in flight read, with how many of them: never evicted.
    pins: Vec<((usize, usize), u32)>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let path = req.path();
    let method = req.method();
    match (method.clone(), path.as_str()) {
        (Method::Post, "/v1/score") => score(&mut req, env, &ctx, false).await,
        (Method::Post, "/v1/score/batch") => score(&mut req, env, &ctx, true).await,
        (Method::Get, "/v1/status") => status(env, &ctx).await,
        (_, "/v1/score" | "/v1/score/batch" | "/v1/status") => {
            json_error(405, "method_not_allowed", &format!("{method} {path}: method not allowed"))
        }
        _ => json_error(
            404,
            "not_found",
            &format!("{path}: no such endpoint (/v1/score, /v1/score/batch, /v1/status)"),
        ),
    }
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    // The cron trigger checks KV whatever the interval says.
    let start = STATE.with_borrow_mut(|s| {
        let start = !s.checking;
        if start {
            s.checking = true;
            s.checked_at_ms = Some(now_ms());
        }
        start
    });
    if start {
        run_check(env).await;
    }
}

async fn score(req: &mut Request, env: Env, ctx: &Context, batch: bool) -> worker::Result<Response> {
    let body = match req.bytes().await {
        Ok(body) => body,
        Err(e) => return json_error(400, "bad_request", &format!("request: the body cannot be read: {e}")),
    };
    let limit = if batch { MAX_BATCH_BYTES } else { MAX_REQUEST_BYTES };
    if body.len() > limit {
        let what = if batch { "batch" } else { "request" };
        return json_error(
            413,
            "bad_request",
            &format!("{what}: {} bytes, more than the {limit} allowed", body.len()),
        );
    }
    ensure_fresh(env.clone(), ctx).await;
    // The parts this request reads are pinned from before they are fetched until it is answered,
    // so that another request's eviction cannot take them while this one awaits KV.
    let needed = STATE.with_borrow(|s| {
        let mut needed = Vec::new();
        if let (Some(loaded), Some(_)) = (&s.loaded, &s.parts_manifest) {
            loaded.borrow_dependent().needed_parts(&body, batch, &mut needed);
        }
        needed
    });
    pin_parts(&needed, true);
    if let Err(why) = load_parts(&env, &needed).await {
        pin_parts(&needed, false);
        worker::console_error!("tollgate: {why}");
        return json_error(503, "part_missing", &why);
    }
    let mut out = Vec::with_capacity(if batch { body.len() * 2 } else { 512 });
    STATE.with_borrow_mut(|s| match &mut s.loaded {
        Some(loaded) => loaded.with_dependent_mut(|_, scorer| {
            if batch {
                scorer.score_batch_bytes(&body, &mut out)
            } else {
                scorer.score_bytes(&body, &mut out)
            }
        }),
        None => error_response(&body, &ScoreError::NoSnapshot, &mut out),
    });
    pin_parts(&needed, false);
    evict_parts(part_budget(&env));
    let format = Format::sniff(&body);
    let content_type = match format {
        Format::Json => "application/json",
        Format::MsgPack => "application/msgpack",
    };
    Ok(Response::builder()
        .with_status(http_status(&out, format))
        .with_header("content-type", content_type)?
        .fixed(out))
}

/// 200 for a score (or a batch), 400 for a refused request, 503 while no snapshot (or no model)
/// serves. Errors are `{ok: false, ...}` maps: the status is read off the response's first bytes.
fn http_status(out: &[u8], format: Format) -> u16 {
    let failed = match format {
        Format::Json => out.starts_with(br#"{"ok":false"#),
        // fixmap of 5, "ok", false
        Format::MsgPack => out.starts_with(&[0x85, 0xa2, b'o', b'k', 0xc2]),
    };
    let unavailable = |kind: &[u8]| out.windows(kind.len()).any(|w| w == kind);
    if !failed {
        200
    } else if unavailable(b"no_snapshot") || unavailable(b"no_model") || unavailable(b"part_missing") {
        503
    } else {
        400
    }
}

async fn status(env: Env, ctx: &Context) -> worker::Result<Response> {
    ensure_fresh(env.clone(), ctx).await;
    let refresh = refresh_seconds(&env);
    let body = STATE.with_borrow(|s| {
        let snapshot = s.loaded.as_ref().map(|l| {
            let snap = l.borrow_dependent().snapshot();
            let meta = snap.meta();
            let entities: serde_json::Map<String, Value> = meta
                .schema
                .entities()
                .iter()
                .enumerate()
                .map(|(i, e)| (e.name.clone(), json!(snap.table(i).map_or(0, |t| t.len()))))
                .collect();
            json!({
                "snapshot_id": meta.snapshot_id,
                "model_id": meta.model_id,
                "as_of": meta.as_of.to_string(),
                "version": s.version,
                "bytes": l.borrow_owner().len(),
                "entities": entities,
                "loaded_at_ms": s.loaded_at_ms,
                "parts": s.parts_manifest.as_ref().map(|m| json!({
                    "total": m.parts,
                    "loaded": s.parts_loaded.len(),
                    "loaded_bytes": s.parts_bytes,
                    "fetched": s.parts_fetched,
                })),
            })
        });
        json!({
            "ok": true,
            "worker": concat!("tollgate-worker ", env!("CARGO_PKG_VERSION")),
            "snapshot": snapshot,
            "checked_at_ms": s.checked_at_ms,
            "refresh_seconds": refresh,
            "loads": s.loads,
            "refused": s.refused.as_ref().map(|(version, error)| json!({"version": version, "error": error})),
            "last_error": s.last_error,
            "memory_bytes": core::arch::wasm32::memory_size(0) * 65_536,
        })
    });
    Response::from_json(&body)
}

/// Checks KV when the interval has passed: inline while no snapshot serves, else in the
/// background (`wait_until`) so that this request is not held up by a download.
async fn ensure_fresh(env: Env, ctx: &Context) {
    let now = now_ms();
    let interval_ms = (refresh_seconds(&env) * 1000.0) as u64;
    let (due, serving) = STATE.with_borrow_mut(|s| {
        let due = !s.checking && s.checked_at_ms.is_none_or(|t| now.saturating_sub(t) >= interval_ms);
        if due {
            s.checking = true;
            s.checked_at_ms = Some(now);
        }
        (due, s.loaded.is_some())
    });
    if !due {
        return;
    }
    if serving {
        ctx.wait_until(run_check(env));
    } else {
        run_check(env).await;
    }
}

async fn run_check(env: Env) {
    let result = check(&env).await;
    if let Err(e) = &result {
        worker::console_error!("tollgate: snapshot check failed: {e}");
    }
    STATE.with_borrow_mut(|s| {
        s.checking = false;
        s.last_error = result.err();
    });
}

/// Reads the manifest; when it names a version neither serving nor refused, fetches the shards,
/// reassembles and verifies the snapshot, and swaps it in. A refusal keeps the current one.
async fn check(env: &Env) -> Result<(), String> {
    let kv = env.kv(KV_BINDING).map_err(|e| format!("KV binding {KV_BINDING}: {e}"))?;
    let text = kv.get(MANIFEST_KEY).text().await.map_err(|e| format!("{MANIFEST_KEY}: {e}"))?;
    let text = text.ok_or_else(|| format!("{MANIFEST_KEY}: absent, no snapshot has been pushed"))?;
    let manifest = Manifest::from_json(&text).map_err(|e| e.to_string())?;
    let known = STATE.with_borrow(|s| {
        s.version.as_deref() == Some(manifest.version.as_str())
            || s.refused.as_ref().is_some_and(|(v, _)| *v == manifest.version)
    });
    if known {
        return Ok(());
    }
    let mut assembly = Assembly::new(&manifest);
    while let Some(key) = assembly.next_key() {
        let shard = get_array_buffer(env, &key).await?;
        let shard = shard.ok_or_else(|| LayoutError::MissingShard { key }.to_string())?;
        // Straight from the JS ArrayBuffer into the snapshot's buffer: no per-shard Vec, so a
        // load needs the snapshot's size in wasm memory and not a shard more.
        let len = shard.length() as usize;
        assembly.push_with(len, |dst| shard.copy_to(dst)).map_err(|e| e.to_string())?;
    }
    let bytes = assembly.finish().map_err(|e| e.to_string())?;
    let keys = edge_keys(env)?;
    // Layout 2: the shards hold the core; table parts are fetched when requests need them.
    let in_parts = manifest.layout == LAYOUT_PARTS;
    let loaded = Loaded::try_new(bytes, |b| {
        if in_parts { Snapshot::load_core(b, &keys) } else { Snapshot::load(b, &keys) }.map(Scorer::new)
    });
    match loaded {
        Ok(loaded) => STATE.with_borrow_mut(|s| {
            // The old snapshot's bytes (and parts) are freed here, once nothing borrows them.
            s.loaded = Some(loaded);
            s.version = Some(manifest.version.clone());
            s.parts_manifest = in_parts.then_some(manifest);
            s.parts_loaded.clear();
            s.parts_bytes = 0;
            s.loaded_at_ms = Some(now_ms());
            s.loads += 1;
        }),
        Err(e) => {
            let why = format!("snapshot {}: {e}", manifest.version);
            worker::console_error!("tollgate: refused {why}");
            STATE.with_borrow_mut(|s| s.refused = Some((manifest.version, why)));
        }
    }
    Ok(())
}

/// Fetches from KV each of the `needed` table parts that is not loaded, and inserts it after its
/// digest checks against the snapshot's signed section table. A part absent from KV or refused
/// fails the request (503), never a silent "unknown entity".
async fn load_parts(env: &Env, needed: &[(usize, usize)]) -> Result<(), String> {
    let Some(manifest) = STATE.with_borrow(|s| s.parts_manifest.clone()) else { return Ok(()) };
    for &(entity, part) in needed {
        let loaded = STATE.with_borrow(|s| {
            s.loaded.as_ref().is_some_and(|l| {
                l.borrow_dependent().snapshot().table(entity).is_some_and(|t| t.is_loaded(part))
            })
        });
        if loaded {
            // Used again: it goes to the back of the eviction order.
            STATE.with_borrow_mut(|s| {
                if let Some(i) = s.parts_loaded.iter().position(|&(e, p, _)| (e, p) == (entity, part))
                    && let Some(used) = s.parts_loaded.remove(i)
                {
                    s.parts_loaded.push_back(used);
                }
            });
            continue;
        }
        let key = manifest.part_key(entity, part);
        let value = get_array_buffer(env, &key).await?;
        let bytes = value.ok_or_else(|| format!("{key}: snapshot part absent from KV"))?.to_vec();
        let len = bytes.len();
        STATE.with_borrow_mut(|s| -> Result<(), String> {
            // A newer snapshot may have been swapped in while this part was on its way, or another
            // request may have loaded it meanwhile.
            if s.version.as_deref() != Some(manifest.version.as_str()) {
                return Ok(());
            }
            let Some(loaded) = &mut s.loaded else { return Ok(()) };
            if loaded.borrow_dependent().snapshot().table(entity).is_some_and(|t| t.is_loaded(part)) {
                return Ok(());
            }
            loaded
                .with_dependent_mut(|_, scorer| scorer.insert_part(entity, part, bytes))
                .map_err(|e| format!("{key}: {e}"))?;
            s.parts_loaded.push_back((entity, part, len));
            s.parts_bytes += len;
            s.parts_fetched += 1;
            Ok(())
        })?;
    }
    Ok(())
}

/// Pins (or unpins) parts: a pinned part is not evicted.
fn pin_parts(parts: &[(usize, usize)], pin: bool) {
    if parts.is_empty() {
        return;
    }
    STATE.with_borrow_mut(|s| {
        for &p in parts {
            match s.pins.iter_mut().find(|(q, _)| *q == p) {
                Some((_, n)) if pin => *n += 1,
                Some((_, n)) => *n = n.saturating_sub(1),
                None if pin => s.pins.push((p, 1)),
                None => {}
            }
        }
        s.pins.retain(|(_, n)| *n > 0);
    });
}

/// Evicts the least recently used unpinned parts until the loaded parts' bytes fit `budget`.
fn evict_parts(budget: usize) {
    STATE.with_borrow_mut(|s| {
        let mut i = 0;
        while s.parts_bytes > budget && i < s.parts_loaded.len() {
            let (entity, part, len) = s.parts_loaded[i];
            if s.pins.iter().any(|(p, _)| *p == (entity, part)) {
                i += 1;
                continue;
            }
            s.parts_loaded.remove(i);
            if let Some(loaded) = &mut s.loaded {
                loaded.with_dependent_mut(|_, scorer| scorer.evict_part(entity, part));
            }
            s.parts_bytes -= len;
        }
    });
}

fn part_budget(env: &Env) -> usize {
    env.var(PART_BUDGET_VAR)
        .ok()
        .and_then(|v| v.to_string().trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_PART_BUDGET_BYTES)
}

/// `KV.get(key, {type: "arrayBuffer"})` on the binding, the value as a `Uint8Array` over it
/// (`None` when absent). workers-rs's `bytes()` would copy it into a Vec first.
async fn get_array_buffer(env: &Env, key: &str) -> Result<Option<Uint8Array>, String> {
    let failed = |e: JsValue| format!("{key}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}")));
    let kv = Reflect::get(env.as_ref(), &JsValue::from_str(KV_BINDING)).map_err(failed)?;
    let get: Function =
        Reflect::get(&kv, &JsValue::from_str("get")).map_err(failed)?.dyn_into().map_err(failed)?;
    let options = Object::new();
    Reflect::set(&options, &JsValue::from_str("type"), &JsValue::from_str("arrayBuffer")).map_err(failed)?;
    let promise: Promise =
        get.call2(&kv, &JsValue::from_str(key), &options).map_err(failed)?.dyn_into().map_err(failed)?;
    let value = JsFuture::from(promise).await.map_err(failed)?;
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    let buffer: ArrayBuffer = value.dyn_into().map_err(failed)?;
    Ok(Some(Uint8Array::new(&buffer)))
}

/// The trusted edge keys: the `EDGE_KEYS` var, one or more edge key files concatenated.
fn edge_keys(env: &Env) -> Result<Vec<EdgeKey>, String> {
    let text = env.var(EDGE_KEYS_VAR).map_err(|_| format!("{EDGE_KEYS_VAR}: not set"))?.to_string();
    edge_keys_from_text(&text).map_err(|e| format!("{EDGE_KEYS_VAR}: {e}"))
}

fn refresh_seconds(env: &Env) -> f64 {
    env.var(REFRESH_VAR)
        .ok()
        .and_then(|v| v.to_string().trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(DEFAULT_REFRESH_SECONDS)
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

/// An error in the scorer's JSON error shape, for what never reaches the scorer.
fn json_error(status: u16, kind: &str, message: &str) -> worker::Result<Response> {
    let snapshot_id = STATE.with_borrow(|s| {
        s.loaded.as_ref().map(|l| l.borrow_dependent().snapshot().meta().snapshot_id.clone())
    });
    let body =
        json!({"ok": false, "error": message, "error_kind": kind, "field": null, "snapshot_id": snapshot_id});
    Ok(Response::from_json(&body)?.with_status(status))
}
