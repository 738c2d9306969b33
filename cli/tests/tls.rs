//! `tollgate serve --tls-cert --tls-key` as a real process, with a certificate made by the test
//! (rcgen) and real TLS clients (ureq with rustls, and `tollgate push` / `replay --ca-cert`)
//! trusting it: health and scoring answer over TLS as the native scorer does, plain HTTP to the
//! TLS port gets no HTTP answer, a client that does not trust the certificate refuses it, SIGTERM still
//! stops the server cleanly, and bad certificate or key files are named before anything starts.

#![cfg(unix)]

mod common;

use common::{History, Result, Server, agent, serving, stderr, stdout, tollgate};
use scorer::score::Scorer as NativeScorer;
use scorer::snapshot::Snapshot;
use std::path::Path;
use tollgate_tests::parity::signer;

/// A self-signed certificate for localhost and 127.0.0.1 in `dir/<name>.pem`, its key in
/// `dir/<name>.key`; returns the certificate's PEM.
fn certificate(dir: &Path, name: &str) -> Result<String> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let pem = made.cert.pem();
    std::fs::write(dir.join(format!("{name}.pem")), &pem)?;
    std::fs::write(dir.join(format!("{name}.key")), made.signing_key.serialize_pem())?;
    Ok(pem)
}

#[test]
fn serves_health_scoring_push_and_replay_over_tls_and_nothing_over_plain_http() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let history = History::new(d)?;
    let last = history.last_day()?;
    let a = history.write_snapshot("a.tgs", "tg-a", scorer::Timestamp(last.0 - 86_400))?;
    history.write_snapshot("b.tgs", "tg-b", last)?;
    let ca = certificate(d, "server")?;
    let server =
        Server::start(d, &["--snapshot", "a.tgs", "--tls-cert", "server.pem", "--tls-key", "server.key"])?;
    let base = server.base.clone();
    let port = base.strip_prefix("https://127.0.0.1:").ok_or(format!("not https: {base}"))?;
    let client = agent(Some(&ca))?;

    let mut health = client.get(&format!("{base}/healthz")).call()?;
    assert_eq!(health.status(), 200);
    assert_eq!(health.body_mut().read_to_string()?, "ok\n");
    // By name too: the certificate is for localhost as well.
    assert_eq!(client.get(&format!("https://localhost:{port}/healthz")).call()?.status(), 200);

    // A real transaction of the last day, answered byte for byte as the native scorer answers it.
    let tx = &history.tx;
    let i = tx.time.partition_point(|t| *t < last);
    let request = serde_json::json!({
        "transaction_id": "tls-1",
        "customer_id": tx.customers.id(tx.customer[i]),
        "terminal_id": tx.terminals.id(tx.terminal[i]),
        "amount": tx.amount[i],
        "time": tx.time[i].0,
    })
    .to_string();
    let mut scored =
        client.post(&format!("{base}/v1/score")).header("content-type", "application/json").send(&request)?;
    assert_eq!(scored.status(), 200);
    let header =
        scored.headers().get("x-tollgate-snapshot").and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(header.as_deref(), Some("tg-a"));
    let body = scored.body_mut().read_to_vec()?;
    let snapshot = std::fs::read(&a)?;
    let mut native = Vec::new();
    NativeScorer::new(Snapshot::load(&snapshot, &[signer().edge_key()])?)
        .score_bytes(request.as_bytes(), &mut native);
    assert_eq!(String::from_utf8_lossy(&body), String::from_utf8_lossy(&native));
    assert!(String::from_utf8_lossy(&body).contains(r#""ok":true"#), "{}", String::from_utf8_lossy(&body));

    // Plain HTTP to the TLS port: the handshake fails, the server sends a TLS alert and closes the
    // connection; no HTTP answer.
    let plain = client.get(&format!("http://127.0.0.1:{port}/healthz")).call();
    assert!(plain.is_err(), "plain HTTP was answered: {:?}", plain.map(|r| r.status()));
    // A client with only the web roots does not trust a self-signed certificate.
    let untrusting = agent(None)?.get(&format!("{base}/healthz")).call();
    let error = untrusting.err().ok_or("a self-signed certificate was trusted")?.to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    // push and replay over https, trusting the certificate with --ca-cert.
    let no_ca = tollgate(d, &["push", "b.tgs", "--to", &base, "--token-file", "admin.token"])?;
    assert!(!no_ca.status.success());
    assert!(stderr(&no_ca).contains(&format!("PUT {base}/v1/snapshot")), "{}", stderr(&no_ca));
    assert!(stderr(&no_ca).to_lowercase().contains("certificate"), "{}", stderr(&no_ca));
    let pushed = tollgate(
        d,
        &["push", "b.tgs", "--to", &base, "--token-file", "admin.token", "--ca-cert", "server.pem"],
    )?;
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(serving(&client, &base)?, "tg-b");
    let n = tx.len() - i;
    let replay =
        tollgate(d, &["replay", "tx.csv", "--to", &base, "--ca-cert", "server.pem", "--concurrency", "2"])?;
    assert!(replay.status.success(), "{}", stderr(&replay));
    assert!(stdout(&replay).contains(&format!("replayed {n} transactions from ")), "{}", stdout(&replay));
    let bad_ca = tollgate(d, &["replay", "tx.csv", "--to", &base, "--ca-cert", "tx.csv"])?;
    assert!(!bad_ca.status.success());
    assert!(stderr(&bad_ca).contains("tx.csv: no PEM certificate"), "{}", stderr(&bad_ca));

    // SIGTERM stops a TLS server as cleanly as a plain one.
    server.terminate()
}

#[test]
fn bad_certificate_or_key_files_are_named_and_nothing_starts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    certificate(d, "one")?;
    certificate(d, "two")?;
    std::fs::write(d.join("edge.key"), signer().edge_key().to_text())?;
    std::fs::write(d.join("notes.txt"), "this is not PEM\n")?;
    let serve = |cert: &str, key: &str| {
        tollgate(
            d,
            &[
                "serve",
                "--edge-key",
                "edge.key",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                cert,
                "--tls-key",
                key,
            ],
        )
    };
    for (cert, key, expected) in [
        (
            "missing.pem",
            "one.key",
            "error: TLS: reading missing.pem: No such file or directory (os error 2)\n",
        ),
        ("one.pem", "missing.key", "error: TLS: reading missing.key: No such file or directory"),
        ("notes.txt", "one.key", "error: TLS: notes.txt: not a PEM certificate chain"),
        ("one.key", "one.key", "error: TLS: one.key: not a PEM certificate chain"),
        ("one.pem", "notes.txt", "error: TLS: notes.txt: not a PEM private key"),
        ("one.pem", "two.key", "error: TLS: the private key two.key does not match the certificate one.pem"),
    ] {
        let out = serve(cert, key)?;
        assert!(!out.status.success(), "{cert} + {key} started");
        assert!(stderr(&out).contains(expected), "{cert} + {key}: {}", stderr(&out));
        assert!(!stdout(&out).contains("listening"), "{}", stdout(&out));
    }
    // Both or neither.
    let half = tollgate(d, &["serve", "--edge-key", "edge.key", "--tls-cert", "one.pem"])?;
    assert!(!half.status.success());
    assert!(stderr(&half).contains("--tls-key <FILE>"), "{}", stderr(&half));
    let help = tollgate(d, &["serve", "--help"])?;
    assert!(
        stdout(&help).contains("--tls-cert <FILE>") && stdout(&help).contains("plain HTTP"),
        "{}",
        stdout(&help)
    );
    Ok(())
}
