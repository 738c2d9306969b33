//! `host::Scorer` on the real `scorer.wasm` in real wasmtime: parity with the native scorer,
//! hot swaps under concurrent load, refused snapshots, rollback, the module cache, and guests
//! that loop forever or trap (small modules with the same exports, written in WAT here).

use anyhow::{Context, Result, ensure};
use host::{Fallback, GuestError, ModuleSource, Scorer, ScorerConfig};
use scorer::features::Aggregates;
use scorer::score::Scorer as NativeScorer;
use scorer::snapshot::{EntityKey, IdHashKey, Snapshot, SnapshotSigner};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tollgate_tests::guests::MISBEHAVING;
use tollgate_tests::parity::{Fixture, fixture, logistic, signer, trees};
use tollgate_tests::scorer_wasm;

fn wasm() -> Result<Vec<u8>> {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    if let Some(w) = WASM.get() {
        return Ok(w.clone());
    }
    let path = scorer_wasm()?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(WASM.get_or_init(|| bytes).clone())
}

fn lr() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| fixture(&logistic(), "lr-parity-v1").expect("the parity fixture builds"))
}

fn gbdt() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| fixture(&trees(), "gbdt-parity-v1").expect("the parity fixture builds"))
}

fn edge_keys() -> String {
    signer().edge_key().to_text()
}

fn host_with(config: ScorerConfig, snapshot: &[u8]) -> Result<Scorer> {
    let scorer = Scorer::new(config, &wasm()?, &edge_keys())?;
    scorer.load_snapshot(snapshot.to_vec())?;
    Ok(scorer)
}

/// The native responses to `requests` for `snapshot`.
fn native(snapshot: &[u8], requests: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    let mut scorer = NativeScorer::new(Snapshot::load(snapshot, &[signer().edge_key()])?);
    Ok(requests
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            scorer.score_bytes(r, &mut out);
            out
        })
        .collect())
}

#[test]
fn parity_corpus_through_the_host_equals_the_native_scorer_byte_for_byte() -> Result<()> {
    let f = lr();
    let host = host_with(ScorerConfig::default(), &f.snapshot)?;
    let expected = native(&f.snapshot, &f.requests)?;
    ensure!(f.requests.len() >= 10_000, "only {} requests", f.requests.len());
    for (i, (r, want)) in f.requests.iter().zip(&expected).enumerate() {
        let got = host.score(r);
        ensure!(got.fallback.is_none(), "request {i} fell back: {:?}", got.fallback);
        ensure!(
            &got.body == want,
            "request {i} differs:\nhost   {}\nnative {}",
            String::from_utf8_lossy(&got.body),
            String::from_utf8_lossy(want)
        );
    }
    // A JSON batch equals the native batch path.
    let json: Vec<&str> = f.json_requests().into_iter().take(200).collect();
    let batch = format!("[{}]", json.join(","));
    let mut want = Vec::new();
    NativeScorer::new(Snapshot::load(&f.snapshot, &[signer().edge_key()])?)
        .score_batch_bytes(batch.as_bytes(), &mut want);
    ensure!(host.score_batch(batch.as_bytes()).body == want, "the batch differs");
    let status = host.status();
    ensure!(status.counts.fallbacks == 0 && status.counts.scored as usize == f.requests.len() + 1);
    Ok(())
}

#[test]
fn concurrent_scoring_during_repeated_swaps_never_fails_or_mixes_snapshots() -> Result<()> {
    let (a, b) = (lr(), gbdt());
    let requests: Vec<Vec<u8>> = a.requests.iter().step_by(7).take(1_500).cloned().collect();
    let want_a = native(&a.snapshot, &requests)?;
    let want_b = native(&b.snapshot, &requests)?;
    let id_a = Snapshot::load(&a.snapshot, &[signer().edge_key()])?.meta().snapshot_id.clone();
    // A generous budget: this checks swaps, not deadlines, and on a loaded machine a thread can be
    // kept off the CPU past the default 50 ms (then the call would rightly fall back).
    let config = ScorerConfig { warm: 1, budget: Duration::from_secs(10), ..Default::default() };
    let host = host_with(config, &a.snapshot)?;
    let stop = Arc::new(AtomicBool::new(false));
    let scored = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new((requests, want_a, want_b, id_a));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (host, stop, scored, shared) = (host.clone(), stop.clone(), scored.clone(), shared.clone());
            std::thread::spawn(move || -> Result<()> {
                let (requests, want_a, want_b, id_a) = &*shared;
                let mut i = w * 101;
                while !stop.load(Ordering::Relaxed) {
                    let k = i % requests.len();
                    let got = host.score(&requests[k]);
                    ensure!(got.fallback.is_none(), "a request fell back during a swap: {:?}", got.fallback);
                    let snap = got.snapshot.context("no snapshot named")?;
                    // The response must be exactly the one of the snapshot that the host says answered.
                    let want = if &snap.snapshot_id == id_a { &want_a[k] } else { &want_b[k] };
                    ensure!(&got.body == want, "request {k} answered by {} differs", snap.snapshot_id);
                    scored.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Ok(())
            })
        })
        .collect();
    let swaps = 30;
    for s in 0..swaps {
        let next = if s % 2 == 0 { &b.snapshot } else { &a.snapshot };
        host.load_snapshot(next.clone())?;
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().map_err(|_| anyhow::anyhow!("a scoring thread panicked"))??;
    }
    let status = host.status();
    eprintln!("{} requests scored on 3 threads across {swaps} swaps", scored.load(Ordering::Relaxed));
    ensure!(status.counts.fallbacks == 0, "{} fallbacks", status.counts.fallbacks);
    ensure!(status.counts.swaps == swaps + 1, "swaps {}", status.counts.swaps);
    ensure!(scored.load(Ordering::Relaxed) > 100, "too few requests ran during the swaps");
    Ok(())
}

#[test]
fn refuses_badly_signed_or_damaged_snapshots_and_keeps_serving_the_current_one() -> Result<()> {
    let f = lr();
    let host = host_with(ScorerConfig::default(), &f.snapshot)?;
    let before = host.snapshot().context("a snapshot serves")?;
    let request = &f.requests[0];
    let want = host.score(request).body;

    // Signed by a key this edge does not trust.
    let stranger = SnapshotSigner::from_secret([9; 32], IdHashKey([42; 16]));
    let other = fixture_signed_by(&stranger)?;
    let err = host.load_snapshot(other).expect_err("a snapshot from an unknown signer loaded");
    ensure!(err.to_string().contains("snapshot refused") && err.to_string().contains("key"), "{err}");
    // A flipped byte in a section.
    let mut damaged = gbdt().snapshot.clone();
    let at = damaged.len() - 20;
    damaged[at] ^= 1;
    let err = host.load_snapshot(damaged).expect_err("a damaged snapshot loaded");
    ensure!(err.to_string().contains("snapshot refused"), "{err}");

    ensure!(host.snapshot().as_deref() == Some(&*before), "the serving snapshot changed");
    ensure!(host.score(request).body == want, "the answer changed after a refused snapshot");
    ensure!(host.status().counts.refused == 2);
    Ok(())
}

/// The parity snapshot's tables and model, signed by `signer` instead.
fn fixture_signed_by(signer: &SnapshotSigner) -> Result<Vec<u8>> {
    use scorer::Timestamp;
    use scorer::features::FeatureSchema;
    use scorer::snapshot::{SnapshotMeta, build_snapshot_with};
    let schema = FeatureSchema::handbook();
    let meta = SnapshotMeta {
        snapshot_id: "tg-stranger".into(),
        as_of: Timestamp(1_700_000_000),
        created_at: Timestamp(1_700_000_000),
        data_range: None,
        exporter_version: "test".into(),
        id_key_fingerprint: signer.id_hash().fingerprint(),
        schema: schema.clone(),
        model_id: Some("lr-stranger".into()),
        lineage: None,
        reference: None,
    };
    // One cold row per entity kind: a valid snapshot in every way but its signer.
    let tables = schema.entities().iter().map(|_| vec![(EntityKey(1), Aggregates::ZERO)]).collect();
    Ok(build_snapshot_with(&meta, tables, Some(&logistic()), None, signer)?)
}

#[test]
fn rollback_restores_the_previous_snapshot_and_a_second_rollback_undoes_it() -> Result<()> {
    let (a, b) = (lr(), gbdt());
    let host = host_with(ScorerConfig::default(), &a.snapshot)?;
    let request = &a.requests[3];
    let (want_a, want_b) = (
        native(&a.snapshot, std::slice::from_ref(request))?,
        native(&b.snapshot, std::slice::from_ref(request))?,
    );
    ensure!(want_a != want_b, "the two models answer alike; the test would prove nothing");
    host.load_snapshot(b.snapshot.clone())?;
    ensure!(host.score(request).body == want_b[0]);
    let restored = host.rollback()?.context("no snapshot after rollback")?;
    ensure!(restored.model_id.as_deref() == Some("lr-parity-v1"), "{restored:?}");
    ensure!(host.score(request).body == want_a[0], "rollback did not restore the first snapshot");
    host.rollback()?;
    ensure!(host.score(request).body == want_b[0], "a second rollback did not undo the first");
    Ok(())
}

#[test]
fn rollback_without_a_previous_version_is_refused() -> Result<()> {
    let host = Scorer::new(ScorerConfig::default(), &wasm()?, &edge_keys())?;
    ensure!(matches!(host.rollback(), Err(host::HostError::NoPrevious)));
    // Before any snapshot, requests get the module's own no_snapshot answer, not a fallback.
    let got = host.score(br#"{"customer_id":1,"terminal_id":2,"amount":1,"time":0}"#);
    ensure!(got.fallback.is_none() && String::from_utf8_lossy(&got.body).contains("no_snapshot"));
    Ok(())
}

#[test]
fn compiled_modules_are_cached_on_disk_and_read_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ScorerConfig { cache_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let first = Scorer::new(config.clone(), &wasm()?, &edge_keys())?;
    ensure!(first.status().module.source == ModuleSource::Compiled);
    let files: Vec<_> = std::fs::read_dir(dir.path())?.collect();
    ensure!(files.len() == 1, "{} cache files", files.len());
    let second = Scorer::new(config, &wasm()?, &edge_keys())?;
    let module = second.status().module;
    ensure!(module.source == ModuleSource::Cached, "the second start compiled again");
    eprintln!(
        "module load: compile {:?}, from cache {:?}",
        first.status().module.load_time,
        module.load_time
    );
    second.load_snapshot(lr().snapshot.clone())?;
    ensure!(second.score(&lr().requests[0]).body == native(&lr().snapshot, &lr().requests[..1])?[0]);
    Ok(())
}

#[test]
fn a_guest_that_loops_forever_gets_the_fallback_and_the_next_call_works() -> Result<()> {
    let bad = wat::parse_str(MISBEHAVING)?;
    let config =
        ScorerConfig { budget: Duration::from_millis(20), fallback: Fallback::Closed, ..Default::default() };
    let host = Scorer::new(config, &bad, &edge_keys())?;
    host.load_snapshot(lr().snapshot.clone())?;
    let t = Instant::now();
    let got = host.score(br#" {"transaction_id":"t-9"}"#);
    let took = t.elapsed();
    ensure!(matches!(got.fallback, Some(GuestError::Timeout { .. })), "{:?}", got.fallback);
    let body = String::from_utf8_lossy(&got.body);
    ensure!(body.contains(r#""decision":"decline""#) && body.contains(r#""fallback":"timeout"#), "{body}");
    ensure!(body.contains(r#""transaction_id":"t-9""#) && body.contains(r#""score":null"#), "{body}");
    ensure!(took < Duration::from_secs(5), "the looping guest held the caller for {took:?}");
    let next = host.score(br#"{"transaction_id":"t-10"}"#);
    ensure!(next.fallback.is_none() && next.body == br#"{"ok":true,"fake":1}"#, "{:?}", next.fallback);
    ensure!(host.status().counts.discarded == 1);
    Ok(())
}

#[test]
fn a_trapping_guest_gets_the_fallback_with_the_transaction_id_and_is_replaced() -> Result<()> {
    let bad = wat::parse_str(MISBEHAVING)?;
    let host =
        Scorer::new(ScorerConfig { fallback: Fallback::Open, ..Default::default() }, &bad, &edge_keys())?;
    // JSON: the transaction id is echoed, the decision is the fail-open allow.
    let got = host.score(br#"{"transaction_id":"t-1"}"#);
    ensure!(got.fallback.is_none());
    let got = host.score(b"#");
    ensure!(matches!(got.fallback, Some(GuestError::Trap(_))), "{:?}", got.fallback);
    let body: serde_json::Value = rmp_or_json(&got.body)?;
    ensure!(body["decision"] == "allow" && body["score"].is_null(), "{body}");
    // A MessagePack batch of one request: the fallback is an array of one response, in
    // MessagePack, with the transaction id echoed.
    let mut batch = vec![0x91, 0x81, 0xae];
    batch.extend_from_slice(b"transaction_id");
    batch.push(7);
    let got = host.score_batch(&batch);
    ensure!(matches!(got.fallback, Some(GuestError::Trap(_))), "{:?}", got.fallback);
    ensure!(got.body.first() == Some(&0x91), "not a MessagePack array of one: {:02x?}", got.body);
    let body = rmp_or_json(&got.body)?;
    ensure!(body[0]["transaction_id"] == 7 && body[0]["decision"] == "allow", "{body}");
    ensure!(host.score(b"{}").fallback.is_none(), "the replacement instance does not work");
    ensure!(host.status().counts.discarded == 2);
    Ok(())
}

fn rmp_or_json(bytes: &[u8]) -> Result<serde_json::Value> {
    Ok(host::wire::parse(bytes)?)
}

#[test]
fn a_new_module_swaps_in_and_rolls_back() -> Result<()> {
    let bad = wat::parse_str(MISBEHAVING)?;
    let host = Scorer::new(ScorerConfig::default(), &bad, &edge_keys())?;
    host.load_snapshot(lr().snapshot.clone())?;
    let request = &lr().requests[0];
    ensure!(host.score(request).body == br#"{"ok":true,"fake":1}"#);
    let info = host.load_module(&wasm()?)?;
    ensure!(info.hash == host::module_hash(&wasm()?));
    ensure!(host.score(request).body == native(&lr().snapshot, &lr().requests[..1])?[0]);
    host.rollback()?;
    ensure!(host.score(request).body == br#"{"ok":true,"fake":1}"#, "rollback kept the new module");
    // A module that is not wasm is refused and the current one keeps serving.
    ensure!(host.load_module(b"not wasm").is_err());
    ensure!(host.score(request).body == br#"{"ok":true,"fake":1}"#);
    Ok(())
}

/// The decision and score of each response in `body` (one, or a batch's array).
fn outcomes(body: &[u8]) -> Result<Vec<(String, Option<f64>)>> {
    let value = rmp_or_json(body)?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    Ok(items
        .iter()
        .map(|r| {
            let decision = r["decision"].as_str().unwrap_or("none").to_string();
            (decision, r["score"].as_f64())
        })
        .collect())
}

#[test]
fn a_shadow_snapshot_is_scored_beside_the_live_one_reported_then_promoted() -> Result<()> {
    let (live, candidate) = (lr(), gbdt());
    let host = host_with(ScorerConfig::default(), &live.snapshot)?;
    ensure!(host.shadow_report().is_none(), "a shadow before any was loaded");
    // A wrongly signed candidate is refused and no shadow starts.
    let stranger = SnapshotSigner::from_secret([7; 32], IdHashKey([7; 16]));
    ensure!(host.load_shadow(fixture_signed_by(&stranger)?).is_err(), "a wrongly signed shadow was taken");
    ensure!(
        host.shadow_report().is_none() && host.status().shadow_snapshot.is_none(),
        "a refused shadow serves"
    );

    let info = host.load_shadow(candidate.snapshot.clone())?;
    ensure!(host.status().shadow_snapshot.as_deref() == Some(&*info), "status does not name the shadow");
    let requests = &candidate.requests[..2_000];
    let (want_live, want_shadow) =
        (native(&live.snapshot, requests)?, native(&candidate.snapshot, requests)?);
    let mut matrix = std::collections::BTreeMap::<(String, String), u64>::new();
    let (mut diffs, mut max_diff) = (Vec::new(), 0f64);
    for (i, r) in requests.iter().enumerate() {
        let scored = host.score(r);
        // The caller gets the live answer, byte for byte; the shadow's rides along.
        ensure!(scored.body == want_live[i], "request {i}: the answer is not the live snapshot's");
        let shadow = scored.shadow.as_deref().context("no shadow answer")?;
        ensure!(shadow.body == want_shadow[i], "request {i}: the shadow answer differs from native");
        ensure!(
            shadow.snapshot.as_deref() == Some(&*info),
            "request {i}: shadow answered by another snapshot"
        );
        let ((ld, ls), (sd, ss)) =
            (outcomes(&want_live[i])?[0].clone(), outcomes(&want_shadow[i])?[0].clone());
        *matrix.entry((ld, sd)).or_default() += 1;
        if let (Some(a), Some(b)) = (ls, ss) {
            diffs.push((a - b).abs());
            max_diff = max_diff.max((a - b).abs());
        }
    }
    let report = host.shadow_report().context("no shadow report")?;
    ensure!(report.compared == requests.len() as u64, "compared {}", report.compared);
    ensure!(report.shadow_fallbacks == 0, "shadow fell back {} times", report.shadow_fallbacks);
    for (l, live_name) in host::DECISIONS.iter().enumerate() {
        for (s, shadow_name) in host::DECISIONS.iter().enumerate() {
            let want = matrix.get(&(live_name.to_string(), shadow_name.to_string())).copied().unwrap_or(0);
            ensure!(
                report.decisions[l][s] == want,
                "{live_name}->{shadow_name}: {} != {want}",
                report.decisions[l][s]
            );
        }
    }
    let changed: u64 = matrix.iter().filter(|((l, s), _)| l != s).map(|(_, n)| n).sum();
    ensure!(report.changed == changed, "changed {} != {changed}", report.changed);
    ensure!(changed > 0, "the two models never disagree: the test shows nothing");
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let got = report.mean_abs_score_diff.context("no score difference")?;
    ensure!((got - mean).abs() < 1e-6, "mean |diff| {got} != {mean}");
    ensure!((report.max_abs_score_diff.unwrap_or(0.0) - max_diff).abs() < 1e-6, "max |diff|");
    // A batch counts each of its transactions.
    let batch = format!("[{}]", candidate.json_requests()[..10].join(","));
    ensure!(host.score_batch(batch.as_bytes()).shadow.is_some(), "a batch was not shadowed");
    ensure!(
        host.shadow_report().context("report")?.compared == requests.len() as u64 + 10,
        "batch not counted"
    );

    // Promotion: the candidate serves, shadowing stops, and rollback brings the old one back.
    let final_report = host.promote_shadow()?;
    ensure!(final_report.compared == requests.len() as u64 + 10, "promote lost the report");
    ensure!(host.snapshot().as_deref().map(|s| &s.digest) == Some(&info.digest), "not promoted");
    ensure!(host.shadow_report().is_none() && host.score(&requests[0]).shadow.is_none(), "still shadowing");
    ensure!(host.score(&requests[0]).body == want_shadow[0], "the promoted snapshot does not answer");
    ensure!(host.promote_shadow().is_err(), "promoted a shadow that is not there");
    host.rollback()?;
    ensure!(host.score(&requests[0]).body == want_live[0], "rollback did not restore the live snapshot");
    // Dropping a shadow returns its report and stops it.
    host.load_shadow(candidate.snapshot.clone())?;
    host.score(&requests[1]);
    ensure!(host.drop_shadow().map(|r| r.compared) == Some(1), "drop did not report");
    ensure!(host.score(&requests[1]).shadow.is_none(), "a dropped shadow still scores");
    Ok(())
}
