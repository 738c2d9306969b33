//! `tollgate www`: serves the built browser demo page (`cargo xtask demo` builds it) on
//! 127.0.0.1 with a static file server; the page scores in the browser, so nothing else runs here.

use anyhow::{Context, bail};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Arguments of `tollgate www`.
#[derive(clap::Args)]
pub struct Args {
    /// The built page: a directory with `index.html`, `pkg/` and `demo/` (`cargo xtask demo`
    /// writes it to target/demo/www).
    #[arg(long, default_value = "target/demo/www")]
    dir: PathBuf,
    /// Port to listen on, on 127.0.0.1 only (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

/// Runs `tollgate www`: serves until Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.dir.join("index.html").is_file() {
        bail!(
            "{} holds no index.html: build the page first (`cargo xtask demo`) or pass --dir",
            args.dir.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
            .await
            .with_context(|| format!("listening on 127.0.0.1:{}", args.port))?;
        let addr = listener.local_addr()?;
        println!("tollgate www: serving {} at http://{addr}/ (Ctrl-C stops)", args.dir.display());
        // ServeDir sends .wasm as application/wasm, which WebAssembly.instantiateStreaming needs.
        let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(&args.dir));
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving the page")
    })
}
