//! `tollgate push SNAPSHOT --to TARGET`: hands a snapshot to a running host (HTTP), a directory
//! (an atomic file replace) or a local Workers KV directory (`kv-local:DIR`).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// Arguments of `tollgate push`.
#[derive(clap::Args)]
pub struct Args {
    /// The snapshot file.
    snapshot: PathBuf,
    /// Where to: `http://HOST:PORT` (a `tollgate serve`), `kv-local:DIR` (local Workers KV) or a
    /// directory.
    #[arg(long)]
    to: String,
    /// File holding the admin bearer token for HTTP targets (or set TOLLGATE_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// Runs `tollgate push`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.snapshot).with_context(|| format!("reading {}", args.snapshot.display()))?;
    if args.to.starts_with("http://") || args.to.starts_with("https://") {
        push_http(&bytes, &args.to, token(&args)?.as_deref())
    } else if let Some(dir) = args.to.strip_prefix("kv-local:") {
        // The worker's local KV (written by `commands::kv`).
        crate::commands::kv::push_to_local_kv(&bytes, Path::new(dir))
    } else {
        let name = args.snapshot.file_name().context("the snapshot path has no file name")?;
        let path = push_dir(&bytes, Path::new(&args.to), Path::new(name))?;
        println!("wrote {}", path.display());
        Ok(())
    }
}

fn token(args: &Args) -> anyhow::Result<Option<String>> {
    Ok(match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("TOLLGATE_ADMIN_TOKEN").ok().map(|t| t.trim().to_string()),
    })
}

/// `PUT {base}/v1/snapshot` with the bearer token; the host's refusal reason on failure.
fn push_http(bytes: &[u8], base: &str, token: Option<&str>) -> anyhow::Result<()> {
    let url = format!("{}/v1/snapshot", base.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.put(&url).header("content-type", "application/octet-stream");
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    let mut response = request.send(bytes).with_context(|| format!("PUT {url}"))?;
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if !status.is_success() {
        bail!("{url} refused the snapshot ({status}): {}", body.trim());
    }
    println!("{url}: {}", body.trim());
    Ok(())
}

/// Writes `bytes` as `dir/name` atomically: a temporary file in `dir`, synced, then renamed over
/// the target, so that a reader sees the old snapshot or the new one, never a part.
pub fn push_dir(bytes: &[u8], dir: &Path, name: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(name);
    let tmp = dir.join(format!(".{}.tmp{}", name.display(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(target)
}
