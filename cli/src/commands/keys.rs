//! `tollgate keys new`: make the exporter's signing key and the edges' key.

use anyhow::{Context, bail};
use std::path::PathBuf;

/// Key management.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a new signing key (secret, for the exporter) and the matching edge key (for every
    /// host, worker and page). Each also holds the secret key that hashes entity ids, so raw ids
    /// never appear in a snapshot.
    New(NewArgs),
}

/// Arguments of `tollgate keys new`.
#[derive(clap::Args)]
pub struct NewArgs {
    /// Directory to write `signing.key` and `edge.key` into (created if missing).
    #[arg(long, default_value = "keys")]
    out: PathBuf,
    /// Replace keys that are already there (snapshots signed with the old key stop verifying).
    #[arg(long)]
    force: bool,
}

/// Runs `tollgate keys ...`.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::New(args) => new(args),
    }
}

fn new(args: NewArgs) -> anyhow::Result<()> {
    let signing = args.out.join("signing.key");
    let edge = args.out.join("edge.key");
    for path in [&signing, &edge] {
        if path.exists() && !args.force {
            bail!("{} already exists; pass --force to replace it", path.display());
        }
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let signer = exporter::snapshot::new_signer()?;
    write_private(&signing, &signer.to_text())?;
    std::fs::write(&edge, signer.edge_key().to_text())
        .with_context(|| format!("writing {}", edge.display()))?;
    println!("wrote {} (secret: keep it with the exporter)", signing.display());
    println!("wrote {} (give it to every host, worker and page)", edge.display());
    Ok(())
}

/// Writes a file readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
