//! Snapshot deltas over real HTTP with the real scorer.wasm: `PUT /v1/snapshot` with a delta
//! against the serving snapshot swaps in exactly the next snapshot; a delta against another base
//! answers 409 naming both digests and a corrupt one 422, and the serving snapshot keeps serving.

use anyhow::{Context, Result, ensure};
use host::service::{ServiceConfig, spawn};
use host::{Scorer, ScorerConfig};
use scorer::features::Aggregates;
use scorer::snapshot::{EntityKey, Snapshot, build_delta, build_snapshot_with};
use serde_json::Value;
use std::time::Duration;
use tollgate_tests::parity::{fixture, logistic, signer};
use tollgate_tests::scorer_wasm;

const TOKEN: &str = "delta-admin-token";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `snapshot` an hour later under `id`: every tenth customer with one more transaction today,
/// the first terminal gone, one new customer (named after `id`).
fn next_of(snapshot: &[u8], id: &str) -> Result<Vec<u8>> {
    let s = signer();
    let loaded = Snapshot::load(snapshot, &[s.edge_key()])?;
    let mut meta = loaded.meta().clone();
    meta.snapshot_id = id.into();
    meta.as_of.0 += 3600;
    let mut tables: Vec<Vec<(EntityKey, Aggregates)>> =
        (0..2).map(|e| Ok(loaded.table(e).context("a table")?.rows().collect())).collect::<Result<_>>()?;
    for (i, (_, a)) in tables[0].iter_mut().enumerate().filter(|(i, _)| i % 10 == 0) {
        a.0[0] += 1.0;
        a.0[1] += 12.5 + i as f64;
    }
    let mut new = Aggregates::ZERO;
    new.0[..2].copy_from_slice(&[1.0, 99.0]);
    tables[0].push((s.id_hash().hash(format!("new-customer-{id}").as_bytes()), new));
    tables[1].remove(0);
    Ok(build_snapshot_with(&meta, tables, loaded.model(), loaded.policy(), &s)?)
}

fn put(agent: &ureq::Agent, base: &str, body: &[u8]) -> Result<(u16, Value)> {
    let mut r = agent
        .put(format!("{base}/v1/snapshot"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send(body)?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).with_context(|| format!("{status}: {text}"))?))
}

/// The serving snapshot's id and digest, from `/v1/status`.
fn serving(agent: &ureq::Agent, base: &str) -> Result<(String, String)> {
    let text = agent.get(format!("{base}/v1/status")).call()?.body_mut().read_to_string()?;
    let status: Value = serde_json::from_str(&text)?;
    let s = &status["snapshot"];
    Ok((
        s["snapshot_id"].as_str().with_context(|| format!("no snapshot id: {text}"))?.into(),
        s["digest"].as_str().with_context(|| format!("no digest: {text}"))?.into(),
    ))
}

#[test]
fn a_delta_against_the_serving_snapshot_swaps_in_the_next_one() -> Result<()> {
    let f = fixture(&logistic(), "lr-delta")?;
    let base_snapshot = f.resigned("tg-base")?;
    let next = next_of(&base_snapshot, "tg-next")?;
    let after = next_of(&next, "tg-after")?;
    let delta = build_delta(&base_snapshot, &next)?;
    ensure!(delta.len() * 4 < next.len(), "delta {} bytes for a {}-byte snapshot", delta.len(), next.len());

    let wasm = std::fs::read(scorer_wasm()?)?;
    let scorer = Scorer::new(ScorerConfig::default(), &wasm, &signer().edge_key().to_text())?;
    scorer.load_snapshot(base_snapshot.clone())?;
    let config = ServiceConfig { admin_token: Some(TOKEN.into()), ..Default::default() };
    let server = spawn(scorer, config, "127.0.0.1:0".parse()?, 2)?;
    let base = format!("http://{}", server.addr);
    let agent = agent();
    let hex = |b: &[u8]| blake3::hash(b).to_hex().to_string();

    // A delta against another base (`next` instead of the serving `tg-base`): 409, both digests.
    let wrong = build_delta(&next, &after)?;
    let (status, answer) = put(&agent, &base, &wrong)?;
    ensure!(status == 409 && answer["error_kind"] == "delta_base_mismatch", "{status} {answer}");
    ensure!(answer["delta_base"] == format!("blake3:{}", hex(&next)), "{answer}");
    ensure!(answer["serving"] == format!("blake3:{}", hex(&base_snapshot)), "{answer}");
    ensure!(serving(&agent, &base)?.0 == "tg-base");

    // A corrupt delta (one byte of a patched row flipped): 422, and tg-base keeps serving.
    let mut corrupt = delta.clone();
    let at = corrupt.len() - 20;
    corrupt[at] ^= 0x40;
    let (status, answer) = put(&agent, &base, &corrupt)?;
    ensure!(status == 422 && answer["error_kind"] == "delta_refused", "{status} {answer}");
    let (status, answer) = put(&agent, &base, &delta[..delta.len() / 2])?;
    ensure!(status == 422 && answer["error_kind"] == "delta_refused", "{status} {answer}");
    ensure!(serving(&agent, &base)?.0 == "tg-base");

    // The right delta: the serving snapshot is `next`, byte for byte.
    let (status, answer) = put(&agent, &base, &delta)?;
    ensure!(status == 200 && answer["kind"] == "delta", "{status} {answer}");
    ensure!(serving(&agent, &base)? == ("tg-next".into(), hex(&next)), "{:?}", serving(&agent, &base)?);
    // And the next delta applies on top of it.
    let (status, answer) = put(&agent, &base, &build_delta(&next, &after)?)?;
    ensure!(status == 200 && answer["kind"] == "delta", "{status} {answer}");
    ensure!(serving(&agent, &base)? == ("tg-after".into(), hex(&after)));
    // A full push still works and is counted apart.
    let (status, answer) = put(&agent, &base, &base_snapshot)?;
    ensure!(status == 200 && answer["kind"] == "full", "{status} {answer}");

    let metrics = agent.get(format!("{base}/metrics")).call()?.body_mut().read_to_string()?;
    ensure!(metrics.contains("tollgate_snapshot_updates_total{kind=\"delta\"} 2"), "{metrics}");
    ensure!(metrics.contains("tollgate_snapshot_updates_total{kind=\"full\"} 1"), "{metrics}");
    ensure!(metrics.contains("tollgate_errors_total{kind=\"delta_base_mismatch\"} 1"), "{metrics}");
    Ok(())
}

#[test]
fn a_delta_to_a_host_with_no_snapshot_is_a_conflict() -> Result<()> {
    let f = fixture(&logistic(), "lr-delta")?;
    let next = next_of(&f.snapshot, "tg-next")?;
    let wasm = std::fs::read(scorer_wasm()?)?;
    let scorer = Scorer::new(ScorerConfig::default(), &wasm, &signer().edge_key().to_text())?;
    let config = ServiceConfig { admin_token: Some(TOKEN.into()), ..Default::default() };
    let server = spawn(scorer, config, "127.0.0.1:0".parse()?, 2)?;
    let base = format!("http://{}", server.addr);
    let (status, answer) = put(&agent(), &base, &build_delta(&f.snapshot, &next)?)?;
    ensure!(status == 409 && answer["serving"] == "none", "{status} {answer}");
    Ok(())
}
