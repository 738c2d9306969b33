//! `kv-local:DIR`: puts a snapshot into a local Workers KV directory, laid out as the edge worker
//! reads it (`tollgate-kv`: shards, then the manifest). DIR is a wrangler persist directory:
//! `wrangler dev --persist-to DIR` (or miniflare with `defaultPersistRoot: DIR/v3`) serves it.
//! The writing is done by workerd's own KV code through `worker/js/miniflare.mjs` (npm miniflare).

use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;
use tollgate_kv::{DEFAULT_SHARD_BYTES, LOCAL_NAMESPACE_ID, entries};

/// The first bytes of every snapshot (`scorer::snapshot::MAGIC`).
const SNAPSHOT_MAGIC: &[u8] = b"TGSNAP\r\n";

/// The node script that writes local KV: `TOLLGATE_WORKER_JS`, else the source tree's.
fn script() -> PathBuf {
    std::env::var_os("TOLLGATE_WORKER_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker/js/miniflare.mjs"))
}

/// Puts `snapshot` into the local KV namespace persisted under `dir` (created if needed), in
/// shards of 8 MiB (`DEFAULT_SHARD_BYTES`; a snapshot built in parts: its core in shards and one
/// value per table part) followed by the manifest, so the worker picks it up at its next check.
pub fn push_to_local_kv(snapshot: &[u8], dir: &Path) -> Result<()> {
    push_with_shards(snapshot, dir, DEFAULT_SHARD_BYTES)
}

fn push_with_shards(snapshot: &[u8], dir: &Path, shard_bytes: usize) -> Result<()> {
    ensure!(
        snapshot.starts_with(SNAPSHOT_MAGIC),
        "kv-local:{}: the file is not a tollgate snapshot",
        dir.display()
    );
    std::fs::create_dir_all(dir)
        .with_context(|| format!("kv-local:{}: cannot create the directory", dir.display()))?;
    let staging = dir.join(format!(".tollgate-push-{}", std::process::id()));
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let result = (|| {
        let values = entries(snapshot, shard_bytes).with_context(|| format!("kv-local:{}", dir.display()))?;
        // In order, the manifest last: a reader that sees the manifest finds every value it names.
        let mut args = Vec::new();
        for (i, (key, bytes)) in values.iter().enumerate() {
            let file = staging.join(format!("value-{i}"));
            std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
            args.push(format!("{key}={}", file.display()));
        }
        let script = script();
        let output = Command::new("node")
            .arg(&script)
            .arg("put")
            .arg(dir)
            .arg(LOCAL_NAMESPACE_ID)
            .args(&args)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .output()
            .with_context(|| {
                format!("running node {} (local KV is written by npm miniflare)", script.display())
            })?;
        ensure!(
            output.status.success(),
            "kv-local:{}: {} failed: {}",
            dir.display(),
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrangler() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../node_modules/.bin/wrangler")
    }

    #[test]
    fn pushed_snapshot_is_readable_by_wrangler_from_the_same_directory() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let snapshot =
            tollgate_tests::parity::fixture(&tollgate_tests::parity::logistic(), "lr-kv")?.snapshot;
        push_with_shards(&snapshot, dir.path(), 16_384)?;
        let (manifest, shards) = tollgate_kv::split(&snapshot, 16_384);
        assert!(shards.len() >= 2, "{} shards", shards.len());
        // wrangler's own local KV command, as `wrangler dev --persist-to DIR` would see it.
        let get = |key: &str| -> Result<Vec<u8>> {
            let out = Command::new(wrangler())
                .args([
                    "kv",
                    "key",
                    "get",
                    key,
                    "--local",
                    "--namespace-id",
                    LOCAL_NAMESPACE_ID,
                    "--persist-to",
                ])
                .arg(dir.path())
                .env("WRANGLER_SEND_METRICS", "false")
                .output()?;
            ensure!(
                out.status.success(),
                "wrangler kv key get {key}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(out.stdout)
        };
        let text = String::from_utf8(get(tollgate_kv::MANIFEST_KEY)?)?;
        assert_eq!(tollgate_kv::Manifest::from_json(text.trim())?, manifest);
        assert_eq!(get(&shards[1].0)?, shards[1].1);
        Ok(())
    }

    #[test]
    fn refuses_a_file_that_is_not_a_snapshot() {
        let dir = std::env::temp_dir().join("tollgate-kv-not-a-snapshot");
        let e = push_to_local_kv(b"hello", &dir).unwrap_err();
        assert!(e.to_string().contains("not a tollgate snapshot"), "{e}");
    }
}
