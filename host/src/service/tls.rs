//! Optional TLS for the service (rustls with the ring provider): a certificate chain and its key
//! read from PEM files, and a listener that hands `axum::serve` connections whose handshake is
//! done, so that plain HTTP and HTTPS share one serving loop and one graceful shutdown.

use axum::serve::Listener;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

/// A handshake not finished by then is dropped: a client that connects and sends nothing does not
/// hold a task for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many handshakes run at once; past it, new connections wait in the kernel's
/// accept queue.
const MAX_HANDSHAKES: usize = 1024;

/// Why a certificate or key could not be used; each names the file and what was wrong with it.
/// The message says it all (no `source()` chain to repeat it).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("reading {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a broken one.
    #[error("{}: not a PEM certificate chain (expected -----BEGIN CERTIFICATE-----): {reason}", path.display())]
    NotPemCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM reader found.
        reason: String,
    },
    /// The key file holds no PEM private key, or a broken one.
    #[error(
        "{}: not a PEM private key (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC \
         PRIVATE KEY): {reason}",
        path.display()
    )]
    NotPemKey {
        /// The file.
        path: PathBuf,
        /// What the PEM reader found.
        reason: String,
    },
    /// The private key is not the one of the certificate's public key.
    #[error("the private key {} does not match the certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the pair for another reason (an unsupported key type, a certificate that
    /// does not parse as X.509).
    #[error("{} and {}: rustls refused them: {error}", cert.display(), key.display())]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        error: rustls::Error,
    },
}

/// A server's TLS setup: what [`serve_tls`](super::serve_tls) and [`TlsListener`] answer with.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and the leaf's PEM private key (PKCS#8, PKCS#1
    /// or SEC1), and checks that they belong together. TLS 1.2 and 1.3, HTTP/1.1 over ALPN.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|error| TlsError::Read { path: path.to_path_buf(), error })
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        let not_cert = |reason: String| TlsError::NotPemCertificate { path: cert.to_path_buf(), reason };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| not_cert(e.to_string()))?;
        if chain.is_empty() {
            return Err(not_cert("no CERTIFICATE section".into()));
        }
        let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NotPemKey {
            path: key.to_path_buf(),
            reason: match e {
                rustls::pki_types::pem::Error::NoItemsFound => "no private key section".into(),
                other => other.to_string(),
            },
        })?;
        let server = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private_key))
            .map_err(|error| match error {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    TlsError::KeyMismatch { cert: cert.to_path_buf(), key: key.to_path_buf() }
                }
                error => TlsError::Refused { cert: cert.to_path_buf(), key: key.to_path_buf(), error },
            })?;
        Ok(TlsConfig::new(server))
    }

    /// Wraps a rustls configuration made elsewhere (a certificate resolver that reloads, client
    /// authentication). Its ALPN list is set to HTTP/1.1, the only protocol the service speaks.
    pub fn new(mut server: ServerConfig) -> TlsConfig {
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConfig { server: Arc::new(server) }
    }

    /// The rustls configuration.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }
}

/// A TCP listener that yields TLS streams: each connection's handshake runs in a task of its own
/// (under a timeout), so that a slow client never holds up the others. Connections whose handshake
/// fails, such as plain HTTP sent to the TLS port, are closed and never reach the router.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    /// Serves TLS with `tls` on the connections of `tcp`.
    pub fn new(tcp: TcpListener, tls: &TlsConfig) -> TlsListener {
        TlsListener { tcp, acceptor: TlsAcceptor::from(tls.server.clone()), handshakes: JoinSet::new() }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Both branches are cancel-safe: axum drops this future when shutdown begins, and what it
        // held (accepted sockets, running handshakes) stays in `self`.
        loop {
            tokio::select! {
                (stream, addr) = Listener::accept(&mut self.tcp), if self.handshakes.len() < MAX_HANDSHAKES => {
                    // TLS records are written one at a time; without this, Nagle's algorithm
                    // could hold a response's last record back for a delayed ACK.
                    let _ = stream.set_nodelay(true);
                    let acceptor = self.acceptor.clone();
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => Some((tls, addr)),
                            _ => None,
                        }
                    });
                }
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write a test file");
        path
    }

    fn pair() -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    #[test]
    fn accepts_a_matching_pem_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = pair();
        let tls =
            TlsConfig::from_pem_files(&write(dir.path(), "c.pem", &cert), &write(dir.path(), "k.pem", &key));
        let tls = tls.expect("a matching pair is accepted");
        assert_eq!(tls.server_config().alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn names_the_file_and_the_reason_for_each_bad_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (cert, key) = pair();
        let (_, other_key) = pair();
        let (cert, key, other_key) =
            (write(d, "cert.pem", &cert), write(d, "key.pem", &key), write(d, "other.pem", &other_key));
        let text = write(d, "text.pem", "hello\n");
        let missing = d.join("missing.pem");

        let error = |c: &Path, k: &Path| match TlsConfig::from_pem_files(c, k) {
            Ok(_) => panic!("{} / {} accepted", c.display(), k.display()),
            Err(e) => e.to_string(),
        };
        let e = error(&missing, &key);
        assert!(e.starts_with(&format!("reading {}: ", missing.display())), "{e}");
        let e = error(&text, &key);
        assert!(e.contains(&format!("{}: not a PEM certificate chain", text.display())), "{e}");
        // A key where the certificate should be, and the other way round.
        let e = error(&key, &cert);
        assert!(e.contains("not a PEM certificate chain") && e.contains("no CERTIFICATE section"), "{e}");
        let e = error(&cert, &cert);
        assert!(e.contains(&format!("{}: not a PEM private key", cert.display())), "{e}");
        let e = error(&cert, &other_key);
        assert_eq!(
            e,
            format!(
                "the private key {} does not match the certificate {}",
                other_key.display(),
                cert.display()
            )
        );
    }
}
