//! `tollgate push` and `tollgate replay` against a real `tollgate serve` process: a signed
//! snapshot pushed over HTTP serves, a badly signed or corrupt one is refused and the old one
//! keeps serving, the admin token is required, a push to a directory replaces the file
//! atomically, a delta (`snapshot delta`, `push --delta-from`) serves the next snapshot and falls
//! back to the whole file when the host serves another, and a replay reports one decision per
//! transaction of the day.

#![cfg(unix)]

mod common;

use common::{History, Result, Server, TOKEN, agent, serving, stderr, stdout, tollgate};
use scorer::Timestamp;
use scorer::snapshot::{IdHashKey, SnapshotSigner};

/// A history with snapshot `a.tgs` (`tg-a`, as of the day before the last) and `b.tgs` (`tg-b`,
/// as of the last day), and a server started on `a.tgs`.
fn serving_a(dir: &std::path::Path) -> Result<(History, Server)> {
    let history = History::new(dir)?;
    let last = history.last_day()?;
    history.write_snapshot("a.tgs", "tg-a", Timestamp(last.0 - 86_400))?;
    history.write_snapshot("b.tgs", "tg-b", last)?;
    let server = Server::start(dir, &["--snapshot", "a.tgs"])?;
    Ok((history, server))
}

/// The `x-tollgate-snapshot` header of a scoring answer.
fn answered_by(agent: &ureq::Agent, base: &str) -> Result<String> {
    let request = r#"{"customer_id":"7","terminal_id":9,"amount":42.5,"time":1523900000}"#;
    let response =
        agent.post(&format!("{base}/v1/score")).header("content-type", "application/json").send(request)?;
    assert_eq!(response.status(), 200);
    let header = response.headers().get("x-tollgate-snapshot").and_then(|v| v.to_str().ok());
    Ok(header.ok_or("no x-tollgate-snapshot header")?.to_string())
}

#[test]
fn a_pushed_snapshot_serves_and_a_refused_one_leaves_the_old_one_serving() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (history, server) = serving_a(d)?;
    let client = agent(None)?;
    assert_eq!(serving(&client, &server.base)?, "tg-a");

    let pushed = tollgate(d, &["push", "b.tgs", "--to", &server.base, "--token-file", "admin.token"])?;
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert!(stdout(&pushed).contains(r#""snapshot_id":"tg-b""#), "{}", stdout(&pushed));
    assert_eq!(serving(&client, &server.base)?, "tg-b");
    assert_eq!(answered_by(&client, &server.base)?, "tg-b");

    // Signed by a key this edge does not trust.
    let rogue = SnapshotSigner::from_secret([99; 32], IdHashKey([42; 16]));
    let rogue = history.snapshot("tg-rogue", history.last_day()?, &rogue)?;
    std::fs::write(d.join("rogue.tgs"), &rogue)?;
    // A trusted snapshot with one byte changed in its tables.
    let mut corrupt = std::fs::read(d.join("b.tgs"))?;
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x5a;
    std::fs::write(d.join("corrupt.tgs"), &corrupt)?;
    std::fs::write(d.join("junk.tgs"), b"not a snapshot at all")?;

    for (file, reason) in [
        ("rogue.tgs", "which this edge does not trust"),
        ("corrupt.tgs", "digest"),
        ("junk.tgs", "truncated"),
    ] {
        let refused = tollgate(d, &["push", file, "--to", &server.base, "--token-file", "admin.token"])?;
        assert!(!refused.status.success(), "{file} was accepted: {}", stdout(&refused));
        let text = stderr(&refused);
        assert!(
            text.contains(&format!(
                "{}/v1/snapshot refused the snapshot (422 Unprocessable Entity): ",
                server.base
            )),
            "{file}: {text}"
        );
        assert!(text.contains("snapshot refused: ") && text.contains(reason), "{file}: {text}");
        // The reason alone, not the JSON it came in.
        assert!(!text.contains("error_kind"), "{file}: {text}");
        assert_eq!(serving(&client, &server.base)?, "tg-b", "after {file}");
        assert_eq!(answered_by(&client, &server.base)?, "tg-b", "after {file}");
    }
    let status: serde_json::Value = serde_json::from_str(
        &client.get(&format!("{}/v1/status", server.base)).call()?.body_mut().read_to_string()?,
    )?;
    assert_eq!(status["counts"]["refused"], 3, "{status}");
    server.terminate()
}

#[test]
fn a_push_without_the_right_admin_token_is_refused_and_says_why() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (_history, server) = serving_a(d)?;
    let client = agent(None)?;

    let missing = tollgate(d, &["push", "b.tgs", "--to", &server.base])?;
    assert!(!missing.status.success());
    let text = stderr(&missing);
    assert!(text.contains("needs the admin token (401 Unauthorized"), "{text}");
    assert!(text.contains("pass --token-file FILE or set TOLLGATE_ADMIN_TOKEN"), "{text}");

    std::fs::write(d.join("wrong.token"), "not-the-token\n")?;
    let wrong = tollgate(d, &["push", "b.tgs", "--to", &server.base, "--token-file", "wrong.token"])?;
    assert!(!wrong.status.success());
    let text = stderr(&wrong);
    assert!(text.contains("did not accept the admin token (401 Unauthorized"), "{text}");
    assert!(text.contains("missing or wrong bearer token"), "{text}");

    let unreadable = tollgate(d, &["push", "b.tgs", "--to", &server.base, "--token-file", "nowhere.token"])?;
    assert!(!unreadable.status.success());
    assert!(stderr(&unreadable).contains("reading nowhere.token"), "{}", stderr(&unreadable));
    assert_eq!(serving(&client, &server.base)?, "tg-a");

    // The token from the environment works as well as --token-file.
    let from_env = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["push", "b.tgs", "--to", &server.base])
        .current_dir(d)
        .env("TOLLGATE_ADMIN_TOKEN", TOKEN)
        .output()?;
    assert!(from_env.status.success(), "{}", stderr(&from_env));
    assert_eq!(serving(&client, &server.base)?, "tg-b");
    Ok(())
}

#[test]
fn a_push_to_a_directory_replaces_the_file_of_that_name_atomically() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let history = History::new(d)?;
    let last = history.last_day()?;
    let a = history.write_snapshot("snap.tgs", "tg-a", Timestamp(last.0 - 86_400))?;
    let first = std::fs::read(&a)?;

    // The directory is made when missing; the file keeps its own name.
    let pushed = tollgate(d, &["push", "snap.tgs", "--to", "edge/snapshots"])?;
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(stdout(&pushed).trim(), "wrote edge/snapshots/snap.tgs");
    assert_eq!(std::fs::read(d.join("edge/snapshots/snap.tgs"))?, first);

    // A newer snapshot of the same name replaces it, and no temporary file is left behind.
    std::fs::create_dir(d.join("v2"))?;
    let newer = history.snapshot("tg-b", last, &tollgate_tests::parity::signer())?;
    std::fs::write(d.join("v2/snap.tgs"), &newer)?;
    let replaced = tollgate(d, &["push", "v2/snap.tgs", "--to", "edge/snapshots"])?;
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    assert_eq!(std::fs::read(d.join("edge/snapshots/snap.tgs"))?, newer);
    let names: Vec<String> = std::fs::read_dir(d.join("edge/snapshots"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    assert_eq!(names, ["snap.tgs"]);

    // A target that is a file, not a directory, is named.
    let onto_file = tollgate(d, &["push", "snap.tgs", "--to", "tx.csv"])?;
    assert!(!onto_file.status.success());
    assert!(stderr(&onto_file).contains("tx.csv"), "{}", stderr(&onto_file));
    let absent = tollgate(d, &["push", "absent.tgs", "--to", "edge/snapshots"])?;
    assert!(!absent.status.success());
    assert!(stderr(&absent).contains("reading absent.tgs"), "{}", stderr(&absent));
    Ok(())
}

/// The numbers after each `label` in `line`: `allow 3, review 1` gives [3, 1] for ["allow", "review"].
fn numbers(line: &str, labels: &[&str]) -> Result<Vec<f64>> {
    labels
        .iter()
        .map(|label| {
            let after = line.split(&format!("{label} ")).nth(1).ok_or(format!("no {label:?} in {line:?}"))?;
            let number: String = after.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            Ok(number.parse::<f64>().map_err(|e| format!("{label:?} in {line:?}: {e}"))?)
        })
        .collect()
}

#[test]
fn replay_reports_one_decision_per_transaction_of_the_day() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (history, server) = serving_a(d)?;
    let last = history.last_day()?;
    let tx = &history.tx;
    let rows: Vec<usize> = (0..tx.len()).filter(|&i| tx.time[i] >= last).collect();
    let frauds = rows.iter().filter(|&&i| tx.fraud[i] != 0).count();
    let n = rows.len();
    assert!(n > 50, "the last day has {n} transactions");

    let replay = tollgate(d, &["replay", "tx.csv", "--to", &server.base, "--concurrency", "3"])?;
    assert!(replay.status.success(), "{}", stderr(&replay));
    let text = stdout(&replay);
    let line = |start: &str| -> Result<String> {
        Ok(text
            .lines()
            .find(|l| l.starts_with(start))
            .ok_or(format!("no {start:?} line in:\n{text}"))?
            .to_string())
    };
    let end = Timestamp(last.0 + 86_400);
    assert_eq!(
        line("replayed")?,
        format!("replayed {n} transactions from {last} to {end} through {}/v1/score", server.base)
    );
    let decisions = numbers(&line("decisions")?, &["allow", "review", "decline"])?;
    assert_eq!(decisions.iter().sum::<f64>(), n as f64, "{text}");
    assert!(line("decisions")?.ends_with(&format!("({frauds} frauds in the stretch)")), "{text}");
    let m = numbers(&line("alerts")?, &["TP", "FP", "FN", "TN"])?;
    assert_eq!(m.iter().sum::<f64>(), n as f64, "{text}");
    assert_eq!(m[0] + m[2], frauds as f64, "TP + FN = frauds: {text}");
    assert_eq!(m[0] + m[1], decisions[1] + decisions[2], "TP + FP = reviewed + declined: {text}");
    if frauds > 0 && frauds < n {
        let auc = numbers(&line("ranking")?, &["AUC ROC"])?;
        assert!((0.0..=1.0).contains(&auc[0]), "{text}");
    }
    let latency = numbers(&line("latency")?, &["p50", "p99", "max"])?;
    assert!(latency[0] > 0.0 && latency[0] <= latency[1] && latency[1] <= latency[2], "{text}");
    assert!(line("latency")?.contains("with 3 in flight"), "{text}");

    // The service scored exactly the transactions sent, once each.
    let client = agent(None)?;
    let status: serde_json::Value = serde_json::from_str(
        &client.get(&format!("{}/v1/status", server.base)).call()?.body_mut().read_to_string()?,
    )?;
    assert_eq!(status["counts"]["scored"], n, "{status}");

    // A day outside the history is named, before anything is sent.
    let empty = tollgate(d, &["replay", "tx.csv", "--to", &server.base, "--day", "2017-01-01"])?;
    assert!(!empty.status.success());
    assert!(stderr(&empty).contains("no transaction between 2017-01-01"), "{}", stderr(&empty));
    Ok(())
}

#[test]
fn a_delta_made_by_snapshot_delta_and_pushed_with_delta_from_serves_the_next_snapshot() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (history, server) = serving_a(d)?;
    let client = agent(None)?;
    // `c.tgs`: an hour after `b.tgs`.
    history.write_snapshot("c.tgs", "tg-c", Timestamp(history.last_day()?.0 + 3600))?;

    let made = tollgate(d, &["snapshot", "delta", "a.tgs", "b.tgs", "-o", "ab.tgd"])?;
    assert!(made.status.success(), "{}", stderr(&made));
    let (b, ab) = (std::fs::read(d.join("b.tgs"))?, std::fs::read(d.join("ab.tgd"))?);
    let text = stdout(&made);
    assert!(text.contains(&format!("{} bytes (", ab.len())), "{text}");
    assert!(text.contains(&format!("{} bytes (", b.len())), "{text}");
    assert!(ab.len() < b.len(), "delta {} bytes, snapshot {}", ab.len(), b.len());

    // `inspect` names a delta, and with --base inspects the snapshot it makes.
    let inspected = tollgate(d, &["snapshot", "inspect", "ab.tgd"])?;
    assert!(inspected.status.success(), "{}", stderr(&inspected));
    assert!(stdout(&inspected).contains("snapshot delta"), "{}", stdout(&inspected));
    let applied = tollgate(d, &["snapshot", "inspect", "ab.tgd", "--key", "edge.key", "--base", "a.tgs"])?;
    assert!(applied.status.success(), "{}", stderr(&applied));
    assert!(stdout(&applied).contains("tg-b"), "{}", stdout(&applied));

    let pushed = tollgate(
        d,
        &["push", "b.tgs", "--delta-from", "a.tgs", "--to", &server.base, "--token-file", "admin.token"],
    )?;
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert!(stdout(&pushed).contains(&format!("sent a delta of {} bytes", ab.len())), "{}", stdout(&pushed));
    assert_eq!(serving(&client, &server.base)?, "tg-b");
    assert_eq!(answered_by(&client, &server.base)?, "tg-b");

    // The host serves tg-b, not tg-a: the delta from a is refused (409) and c goes whole.
    let fallback = tollgate(
        d,
        &["push", "c.tgs", "--delta-from", "a.tgs", "--to", &server.base, "--token-file", "admin.token"],
    )?;
    assert!(fallback.status.success(), "{}", stderr(&fallback));
    let text = stdout(&fallback);
    assert!(
        text.contains("the host refused the delta") && text.contains("sent the whole snapshot"),
        "{text}"
    );
    assert_eq!(serving(&client, &server.base)?, "tg-c");

    // A corrupt delta (against the serving tg-c) is refused with its reason; tg-c keeps serving.
    let cb = tollgate(d, &["snapshot", "delta", "c.tgs", "b.tgs", "-o", "cb.tgd"])?;
    assert!(cb.status.success(), "{}", stderr(&cb));
    let mut corrupt = std::fs::read(d.join("cb.tgd"))?;
    let at = corrupt.len() - 3;
    corrupt[at] ^= 0x10;
    std::fs::write(d.join("corrupt.tgd"), &corrupt)?;
    let refused = tollgate(d, &["push", "corrupt.tgd", "--to", &server.base, "--token-file", "admin.token"])?;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("snapshot delta refused"), "{}", stderr(&refused));
    assert_eq!(serving(&client, &server.base)?, "tg-c");
    server.terminate()
}
