//! TLS for the load tool's MQTT connections (`--tls`, `--cafile`, `--cert`, `--key`,
//! `--server-name`): the rustls client configuration built once from PEM files, and the
//! session of one connection.
//!
//! The bench's client does readiness-based I/O on the bare `TcpStream` (see [`super::client`]),
//! so TLS is kept sans-IO, as the server does it (`crate::tls`): ciphertext read with
//! `try_read` goes into rustls, plaintext comes out into the read buffer; plaintext to send goes
//! into rustls and ciphertext leaves with `try_write`. No async TLS stream is needed, the
//! scenarios' `select!` loops stay as they are, and a plain connection pays one branch.
//!
//! Every connection makes a full handshake: session resumption is off, so a connect-rate run
//! measures what a storm of distinct devices costs, not the cheaper resumed handshakes of
//! connections that share one ticket cache. ALPN offers `mqtt`. Only the ring provider is used
//! (see crates.md).

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::BytesMut;
use rustls::client::Resumption;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use super::client::Fill;
use crate::tls::{load_certs, load_key};

/// TLS options of the MQTT scenarios.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// MQTT over TLS; the server's certificate is verified against --cafile.
    #[arg(long)]
    pub tls: bool,
    /// CA certificates (PEM) the server's certificate must chain to.
    #[arg(long, requires = "tls")]
    pub cafile: Option<PathBuf>,
    /// Client certificate chain (PEM, leaf first) presented by every connection (mTLS).
    #[arg(long, requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the host of --addr, an IP address
    /// or a DNS name).
    #[arg(long, requires = "tls")]
    pub server_name: Option<String>,
}

/// The TLS settings every connection of a run shares.
#[derive(Debug, Clone)]
pub(crate) struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl ClientTls {
    /// The settings `args` ask for, or `None` without `--tls`. `addr` is `--addr`, whose host
    /// is the default server name.
    pub(crate) fn from_args(args: &TlsArgs, addr: &str) -> anyhow::Result<Option<ClientTls>> {
        if !args.tls {
            return Ok(None);
        }
        let cafile = args
            .cafile
            .as_ref()
            .context("--tls needs --cafile: the bench trusts only the CA it is given")?;
        let mut roots = RootCertStore::empty();
        for cert in load_certs(cafile)? {
            roots
                .add(cert)
                .with_context(|| format!("{}: not a usable CA certificate", cafile.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("the ring provider's TLS versions")?
            .with_root_certificates(roots);
        let mut config = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .with_context(|| format!("{} / {}", cert.display(), key.display()))?,
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => anyhow::bail!("--cert needs --key"),
            (None, Some(_)) => anyhow::bail!("--key needs --cert"),
        };
        config.resumption = Resumption::disabled();
        config.alpn_protocols = vec![b"mqtt".to_vec()];
        let name = match &args.server_name {
            Some(name) => name.clone(),
            None => host_of(addr).to_owned(),
        };
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| anyhow::anyhow!("server name {name:?} (--server-name, else the host of --addr): {e}"))?;
        Ok(Some(ClientTls {
            config: Arc::new(config),
            server_name,
        }))
    }

    /// A new client session.
    pub(crate) fn session(&self) -> anyhow::Result<Box<ClientConnection>> {
        let conn =
            ClientConnection::new(self.config.clone(), self.server_name.clone()).context("starting a TLS session")?;
        Ok(Box::new(conn))
    }
}

/// The host part of `host:port` (`[v6]:port` included).
fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// `io::Read` / `io::Write` over a tokio socket's non-blocking calls, for rustls's
/// `read_tls` / `write_tls`: `WouldBlock` passes through to the caller.
struct TryIo<'a>(&'a TcpStream);

impl Read for TryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads what the socket has now into `tls`, and moves any plaintext into `rbuf`: `Empty` also
/// when only part of a record or only handshake messages came. Ends with `Eof` on close_notify
/// or the end of the stream. A TLS
/// failure (a bad certificate, an alert from the server) is an `InvalidData` error naming it;
/// the alert rustls wants to send about it is written first, if the socket takes it.
pub(crate) fn fill(tls: &mut ClientConnection, stream: &TcpStream, rbuf: &mut BytesMut) -> io::Result<Fill> {
    match tls.read_tls(&mut TryIo(stream)) {
        Ok(0) => return Ok(Fill::Eof),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Fill::Empty),
        Err(e) => return Err(e),
    }
    let state = match tls.process_new_packets() {
        Ok(state) => state,
        Err(e) => {
            let _ = tls.write_tls(&mut TryIo(stream));
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")));
        }
    };
    let available = state.plaintext_bytes_to_read();
    if available > 0 {
        let start = rbuf.len();
        rbuf.resize(start + available, 0);
        let n = tls.reader().read(&mut rbuf[start..])?;
        rbuf.truncate(start + n);
        return Ok(Fill::Data);
    }
    if state.peer_has_closed() {
        return Ok(Fill::Eof);
    }
    Ok(Fill::Empty)
}

/// Moves plaintext from `wbuf` into `tls` and writes ciphertext until the socket would block.
pub(crate) fn flush(tls: &mut ClientConnection, stream: &TcpStream, wbuf: &mut BytesMut) -> io::Result<()> {
    loop {
        while tls.wants_write() {
            match tls.write_tls(&mut TryIo(stream)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if wbuf.is_empty() {
            return Ok(());
        }
        let n = tls.writer().write(wbuf)?;
        if n == 0 {
            return Ok(());
        }
        bytes::Buf::advance(wbuf, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_defaults_to_the_host_of_the_address() {
        assert_eq!(host_of("127.0.0.1:8883"), "127.0.0.1");
        assert_eq!(host_of("localhost:8883"), "localhost");
        assert_eq!(host_of("[::1]:8883"), "::1");
        assert_eq!(host_of("broker.example"), "broker.example");
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let args = TlsArgs {
            tls: true,
            cafile: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..TlsArgs::default()
        };
        let err = match ClientTls::from_args(&args, "127.0.0.1:8883") {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("a missing CA file was accepted"),
        };
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let args = TlsArgs {
            tls: true,
            ..TlsArgs::default()
        };
        assert!(
            ClientTls::from_args(&args, "127.0.0.1:8883").is_err(),
            "--tls without --cafile"
        );
        assert!(matches!(
            ClientTls::from_args(&TlsArgs::default(), "127.0.0.1:1883"),
            Ok(None)
        ));
    }
}
