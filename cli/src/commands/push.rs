//! `tollgate push SNAPSHOT --to TARGET`: hands a snapshot to a running host (HTTP), a directory
//! (an atomic file replace) or a local Workers KV directory (`kv-local:DIR`); to a host, optionally
//! as the delta from the snapshot it serves (`--delta-from`).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use ureq::tls::{PemItem, RootCerts, TlsConfig};

/// Arguments of `tollgate push`.
#[derive(clap::Args)]
pub struct Args {
    /// The snapshot file.
    snapshot: PathBuf,
    /// Where to: `http://HOST:PORT` or `https://HOST:PORT` (a `tollgate serve`), `kv-local:DIR`
    /// (local Workers KV) or a directory (the file is written there under its own name,
    /// atomically).
    #[arg(long)]
    to: String,
    /// File holding the admin bearer token for HTTP targets (or set TOLLGATE_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// For an https:// target: trust the PEM certificate(s) in FILE (e.g. the host's self-signed
    /// certificate) instead of the built-in web roots.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// For an http(s):// target: send only the delta from snapshot BASE (the one the host
    /// serves) to SNAPSHOT; when the host serves another snapshot (409), send the whole file.
    #[arg(long, value_name = "BASE")]
    delta_from: Option<PathBuf>,
}

/// Runs `tollgate push`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.snapshot).with_context(|| format!("reading {}", args.snapshot.display()))?;
    let name = args.snapshot.file_name().context("the snapshot path has no file name")?;
    let token = token(args.token_file.as_deref())?;
    if let Some(base_path) = &args.delta_from {
        if !(args.to.starts_with("http://") || args.to.starts_with("https://")) {
            bail!("--delta-from needs an http:// or https:// target, not {}", args.to);
        }
        let base = std::fs::read(base_path).with_context(|| format!("reading {}", base_path.display()))?;
        let tls = tls_config(args.ca_cert.as_deref())?;
        let delta = scorer::snapshot::build_delta(&base, &bytes)
            .with_context(|| format!("making the delta from {}", base_path.display()))?;
        let pushed = push_http_delta(&bytes, &delta, &args.to, token.as_deref(), tls)?;
        println!("{}", pushed.describe(bytes.len()));
        return Ok(());
    }
    let done = push_to(&bytes, &args.to, Path::new(name), token.as_deref(), args.ca_cert.as_deref())?;
    println!("{done}");
    Ok(())
}

/// Hands snapshot `bytes` to one target (`http(s)://HOST:PORT`, `kv-local:DIR` or a directory,
/// where it is written as `name`); what the target answered, for the log.
pub fn push_to(
    bytes: &[u8],
    to: &str,
    name: &Path,
    token: Option<&str>,
    ca_cert: Option<&Path>,
) -> anyhow::Result<String> {
    if to.starts_with("http://") || to.starts_with("https://") {
        let tls = tls_config(ca_cert)?;
        push_http(bytes, to, token, tls)
    } else if let Some(dir) = to.strip_prefix("kv-local:") {
        // The worker's local KV (written by `commands::kv`).
        crate::commands::kv::push_to_local_kv(bytes, Path::new(dir))?;
        Ok(format!("kv-local:{dir}: stored"))
    } else {
        let path = push_dir(bytes, Path::new(to), name)?;
        Ok(format!("wrote {}", path.display()))
    }
}

/// The admin bearer token for HTTP targets: from `file`, else TOLLGATE_ADMIN_TOKEN.
pub fn token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    Ok(match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("TOLLGATE_ADMIN_TOKEN").ok().map(|t| t.trim().to_string()),
    })
}

/// How `push` and `replay` check an https:// server: the built-in web roots, or only the PEM
/// certificate(s) in `ca_cert`.
pub fn tls_config(ca_cert: Option<&Path>) -> anyhow::Result<TlsConfig> {
    let Some(path) = ca_cert else { return Ok(TlsConfig::default()) };
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(cert) = item.with_context(|| format!("{}: bad PEM", path.display()))? {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        bail!("{}: no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display());
    }
    Ok(TlsConfig::builder().root_certs(RootCerts::new_with_certs(&certs)).build())
}

/// An HTTP(S) client that hands every status back to the caller (refusals carry a reason).
pub fn agent(tls: TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).tls_config(tls).build().into()
}

/// `PUT {base}/v1/snapshot` with the bearer token; the host's refusal reason on failure.
fn push_http(bytes: &[u8], base: &str, token: Option<&str>, tls: TlsConfig) -> anyhow::Result<String> {
    let (url, status, body) = put_snapshot(bytes, base, token, &agent(tls))?;
    if !status.is_success() {
        return Err(refusal(&url, status, &body, token));
    }
    Ok(format!("{url}: {}", body.trim()))
}

/// `PUT {base}/v1/snapshot` of `bytes` (a snapshot or a delta): the URL, status and body.
fn put_snapshot(
    bytes: &[u8],
    base: &str,
    token: Option<&str>,
    agent: &ureq::Agent,
) -> anyhow::Result<(String, ureq::http::StatusCode, String)> {
    let url = format!("{}/v1/snapshot", base.trim_end_matches('/'));
    let mut request = agent.put(&url).header("content-type", "application/octet-stream");
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    let mut response = request.send(bytes).with_context(|| format!("PUT {url}"))?;
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Ok((url, status, body))
}

/// The error for a host's refusal: its reason (the problem answer's "error") and what to do.
fn refusal(url: &str, status: ureq::http::StatusCode, body: &str, token: Option<&str>) -> anyhow::Error {
    let reason = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    match (status.as_u16(), token) {
        (401, None) => anyhow::anyhow!(
            "{url} needs the admin token ({status}: {reason}): pass --token-file FILE or set \
             TOLLGATE_ADMIN_TOKEN"
        ),
        (401, Some(_)) => anyhow::anyhow!("{url} did not accept the admin token ({status}: {reason})"),
        _ => anyhow::anyhow!("{url} refused the snapshot ({status}): {reason}"),
    }
}

/// What [`push_http_delta`] sent.
#[derive(Debug)]
pub struct DeltaPush {
    /// Bytes of the delta (sent first).
    pub delta_bytes: usize,
    /// Set when the host served another snapshot than the base (409) and the whole snapshot was
    /// sent instead: the host's reason.
    pub full_because: Option<String>,
    /// The host's answer to the push that took effect.
    pub answer: String,
}

impl DeltaPush {
    /// One line for the log: what was sent, and why the whole file when it was.
    pub fn describe(&self, snapshot_bytes: usize) -> String {
        match &self.full_because {
            None => format!(
                "sent a delta of {} bytes (snapshot {snapshot_bytes} bytes): {}",
                self.delta_bytes, self.answer
            ),
            Some(why) => format!(
                "the host refused the delta ({why}); sent the whole snapshot ({snapshot_bytes} bytes) instead: {}",
                self.answer
            ),
        }
    }
}

/// Pushes `delta` (from `scorer::snapshot::build_delta`) to a host; when the host serves another
/// snapshot than the delta's base (409), pushes `next`, the snapshot the delta makes, whole.
pub fn push_http_delta(
    next: &[u8],
    delta: &[u8],
    to: &str,
    token: Option<&str>,
    tls: TlsConfig,
) -> anyhow::Result<DeltaPush> {
    let agent = agent(tls);
    let (url, status, body) = put_snapshot(delta, to, token, &agent)?;
    if status.as_u16() == 409 {
        let why = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.trim().to_string());
        let (url, status, body) = put_snapshot(next, to, token, &agent)?;
        if !status.is_success() {
            return Err(refusal(&url, status, &body, token));
        }
        return Ok(DeltaPush {
            delta_bytes: delta.len(),
            full_because: Some(why),
            answer: format!("{url}: {}", body.trim()),
        });
    }
    if !status.is_success() {
        return Err(refusal(&url, status, &body, token));
    }
    Ok(DeltaPush { delta_bytes: delta.len(), full_because: None, answer: format!("{url}: {}", body.trim()) })
}

/// Writes `bytes` as `dir/name` atomically: a temporary file in `dir`, synced, then renamed over
/// the target, so that a reader sees the old snapshot or the new one, never a part.
pub fn push_dir(bytes: &[u8], dir: &Path, name: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(name);
    exporter::durable::replace_file(&target, bytes)
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(target)
}
