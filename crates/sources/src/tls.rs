//! TLS to sources: the libpq `sslmode` vocabulary, CA certificates given as PEM text, rustls
//! (`ring` provider, no OpenSSL) for PostgreSQL (`tokio-postgres` and the hand-written
//! replication connection) and `mysql_async`'s rustls support for MySQL/MariaDB, and errors
//! that name the certificate problem.
//!
//! | mode | TLS | certificate checks |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it, else plain | none |
//! | `require` | always | none; with a CA given, as `verify-ca` (libpq does the same) |
//! | `verify-ca` | always | chain to the given CA (else to the built-in web roots) |
//! | `verify-full` | always | `verify-ca` and the host name against the certificate's names |
//!
//! Without a CA, `verify-ca`/`verify-full` trust Mozilla's root program as compiled into
//! `webpki-roots` (the host's certificate store is not read, so behaviour does not depend on
//! the machine).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::SourceError;

/// Largest CA certificate text accepted (`sslRootCert`).
pub const MAX_ROOT_CERT_BYTES: usize = 64 * 1024;

pub use refract_protocol::SslMode;

/// The TLS settings of a source: the mode and an optional CA certificate (PEM text, one or more
/// `CERTIFICATE` sections).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SourceTls {
    /// The mode.
    pub mode: SslMode,
    /// CA certificate(s) to trust instead of the built-in roots, PEM.
    pub root_cert: Option<String>,
}

impl fmt::Debug for SourceTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceTls")
            .field("mode", &self.mode)
            .field("root_cert", &self.root_cert.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl SourceTls {
    /// Plain connections only.
    pub fn disabled() -> SourceTls {
        SourceTls {
            mode: SslMode::Disable,
            root_cert: None,
        }
    }

    /// The mode in force: `require` with a CA is `verify-ca`, as in libpq.
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (m, _) => m,
        }
    }
}

/// Check a CA certificate text: 1 byte to 64 KiB of PEM holding only `CERTIFICATE` sections,
/// each a certificate usable as a trust anchor. Returns the certificates.
pub fn parse_root_cert(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if pem.len() > MAX_ROOT_CERT_BYTES {
        return Err(format!(
            "is {} bytes; at most {MAX_ROOT_CERT_BYTES} bytes (64 KiB) of PEM are accepted",
            pem.len()
        ));
    }
    let mut rd = pem.as_bytes();
    let mut certs = Vec::new();
    loop {
        match rustls::pki_types::pem::from_buf(&mut rd) {
            Ok(Some((rustls::pki_types::pem::SectionKind::Certificate, der))) => {
                certs.push(CertificateDer::from(der))
            }
            Ok(Some((kind, _))) => {
                return Err(format!(
                    "holds a {kind:?} PEM section; give only the CA certificate(s) \
                     (-----BEGIN CERTIFICATE----- …), never a private key"
                ))
            }
            Ok(None) => break,
            Err(e) => return Err(format!("is not valid PEM: {e}")),
        }
    }
    if certs.is_empty() {
        return Err(
            "holds no PEM certificate: give the CA certificate as text starting with \
             -----BEGIN CERTIFICATE-----"
                .into(),
        );
    }
    let mut store = RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        store
            .add(c.clone())
            .map_err(|e| format!("certificate {} cannot be parsed: {e}", i + 1))?;
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make `ring` the process-wide rustls provider (what `mysql_async` uses); idempotent.
pub(crate) fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn roots(tls: &SourceTls) -> Result<RootCertStore, SourceError> {
    let mut store = RootCertStore::empty();
    match &tls.root_cert {
        Some(pem) => {
            for c in parse_root_cert(pem)
                .map_err(|e| SourceError::Tls(format!("the CA certificate (sslRootCert) {e}")))?
            {
                store
                    .add(c)
                    .map_err(|e| SourceError::Tls(format!("the CA certificate: {e}")))?;
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

/// The rustls client configuration of a mode (`None` for `disable`).
pub(crate) fn client_config(tls: &SourceTls) -> Result<Option<Arc<ClientConfig>>, SourceError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match tls.effective_mode() {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => Arc::new(NoHostNameCheck {
            roots: None,
            provider: provider.clone(),
        }),
        SslMode::VerifyCa => Arc::new(NoHostNameCheck {
            roots: Some(Arc::new(roots(tls)?)),
            provider: provider.clone(),
        }),
        SslMode::VerifyFull => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(tls)?), provider.clone())
                .build()
                .map_err(|e| SourceError::Tls(format!("cannot set up certificate checks: {e}")))?
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Tls(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// The certificate check of `prefer`/`require` and `verify-ca`, which rustls does not have: the
/// host name is never compared. Without `roots` (`prefer`/`require`) any certificate is accepted,
/// as libpq checks none in these modes; with them (`verify-ca`) the chain must lead to a trusted
/// root, validity dates included. Handshake signatures are checked against the certificate's
/// key in every mode.
#[derive(Debug)]
struct NoHostNameCheck {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoHostNameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// MySQL / MariaDB (mysql_async)

/// The name `mysql_async` is told to expect in `verify-ca` mode. Its rustls verifier skips
/// only a host-name mismatch when `skip_domain_validation` is set, and recognises one by the
/// text `NotValidForName` in the error, which rustls 0.23.2x no longer prints, except that it
/// quotes the expected name: this name makes the mismatch recognisable (and can never be in a
/// certificate: `.invalid` is reserved). The chain is still checked in full. The server sees
/// it as the TLS SNI name; MySQL and MariaDB ignore SNI.
const MYSQL_VERIFY_CA_NAME: &str = "NotValidForName.refract.invalid";

/// `mysql_async` TLS options of a mode (`None`: plain).
pub(crate) fn mysql_ssl_opts(tls: &SourceTls) -> Option<mysql_async::SslOpts> {
    install_provider();
    let mode = tls.effective_mode();
    if mode == SslMode::Disable {
        return None;
    }
    let mut o = mysql_async::SslOpts::default();
    if let Some(pem) = &tls.root_cert {
        o = o
            .with_root_certs(vec![pem.as_bytes().to_vec().into()])
            .with_disable_built_in_roots(true);
    }
    match mode {
        SslMode::Prefer | SslMode::Require => o = o.with_danger_accept_invalid_certs(true),
        SslMode::VerifyCa => {
            o = o
                .with_danger_skip_domain_validation(true)
                .with_danger_tls_hostname_override(Some(MYSQL_VERIFY_CA_NAME))
        }
        SslMode::VerifyFull | SslMode::Disable => {}
    }
    Some(o)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL (tokio-postgres)

/// `tokio-postgres` TLS over rustls. The mode decides whether it is used at all
/// ([`pg_ssl_mode`]).
#[derive(Clone)]
pub(crate) struct PgTls(Option<Arc<ClientConfig>>);

impl PgTls {
    pub(crate) fn new(tls: &SourceTls) -> Result<PgTls, SourceError> {
        Ok(PgTls(client_config(tls)?))
    }
}

/// The `tokio-postgres` mode of ours.
pub(crate) fn pg_ssl_mode(tls: &SourceTls) -> tokio_postgres::config::SslMode {
    use tokio_postgres::config::SslMode as M;
    match tls.effective_mode() {
        SslMode::Disable => M::Disable,
        SslMode::Prefer => M::Prefer,
        _ => M::Require,
    }
}

/// One connection's TLS connector.
pub(crate) struct PgTlsConnect {
    config: Option<Arc<ClientConfig>>,
    name: Result<ServerName<'static>, String>,
}

impl tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> for PgTls {
    type Stream = PgTlsStream<tokio_postgres::Socket>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, io::Error> {
        Ok(PgTlsConnect {
            config: self.0.clone(),
            name: server_name(domain),
        })
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a host name TLS can check: {e}"))
}

impl tokio_postgres::tls::TlsConnect<tokio_postgres::Socket> for PgTlsConnect {
    type Stream = PgTlsStream<tokio_postgres::Socket>;
    type Error = io::Error;
    type Future = Pin<
        Box<dyn std::future::Future<Output = Result<Self::Stream, io::Error>> + Send + 'static>,
    >;

    fn connect(self, stream: tokio_postgres::Socket) -> Self::Future {
        Box::pin(async move {
            let config = self
                .config
                .ok_or_else(|| io::Error::other("TLS is disabled for this source"))?;
            let name = self.name.map_err(io::Error::other)?;
            let s = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            Ok(PgTlsStream(Box::new(s)))
        })
    }
}

/// A TLS stream for `tokio-postgres` (no channel binding: SCRAM without `-PLUS`).
pub(crate) struct PgTlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::ChannelBinding::none()
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL replication connection (raw socket)

/// The socket of the hand-written replication connection: plain or TLS.
pub(crate) enum PgStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Negotiate TLS on a fresh PostgreSQL socket as `tls` says (`SSLRequest`, then the
/// handshake; `prefer` goes on in plain text when the server answers `N`).
pub(crate) async fn pg_negotiate(
    mut sock: TcpStream,
    host: &str,
    tls: &SourceTls,
) -> Result<PgStream, SourceError> {
    let Some(config) = client_config(tls)? else {
        return Ok(PgStream::Plain(sock));
    };
    let io = |e: io::Error| SourceError::Unreachable(format!("{host}: {e}"));
    sock.write_all(&SSL_REQUEST).await.map_err(io)?;
    let mut answer = [0u8; 1];
    sock.read_exact(&mut answer).await.map_err(io)?;
    match answer[0] {
        b'S' => {}
        b'N' if tls.effective_mode() == SslMode::Prefer => return Ok(PgStream::Plain(sock)),
        b'N' => return Err(server_offers_no_tls(tls)),
        other => {
            return Err(SourceError::Other(format!(
                "unexpected answer {other:#04x} to the TLS request: not a PostgreSQL server?"
            )))
        }
    }
    let name = server_name(host).map_err(SourceError::Tls)?;
    match tokio_rustls::TlsConnector::from(config)
        .connect(name, sock)
        .await
    {
        Ok(s) => Ok(PgStream::Tls(Box::new(s))),
        Err(e) => Err(tls_error_of(&e, tls, host)
            .unwrap_or_else(|| SourceError::Tls(format!("the TLS handshake failed: {e}")))),
    }
}

impl AsyncRead for PgStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PgStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PgStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PgStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PgStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PgStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors a person can act on

/// `require` or stronger, and the server has no TLS.
pub(crate) fn server_offers_no_tls(tls: &SourceTls) -> SourceError {
    SourceError::Tls(format!(
        "the server does not offer TLS, and sslMode {} needs it: enable TLS on the server \
         (MySQL/MariaDB ssl_cert/ssl_key, PostgreSQL ssl = on) or set sslMode to prefer or disable",
        tls.mode
    ))
}

/// The rustls error somewhere in `e`'s chain (through `io::Error`s that wrap one).
pub(crate) fn find_rustls<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut depth = 0;
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = err
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| find_rustls(i))
        {
            return Some(inner);
        }
        depth += 1;
        if depth > 16 {
            break;
        }
        cur = err.source();
    }
    None
}

/// A [`SourceError::Tls`] for a TLS failure found in `e`'s chain; `None` if there is none.
pub(crate) fn tls_error_of(
    e: &(dyn std::error::Error + 'static),
    tls: &SourceTls,
    host: &str,
) -> Option<SourceError> {
    find_rustls(e).map(|r| SourceError::Tls(describe(r, tls, host)))
}

/// What a rustls error means for the person who configured the connection.
pub(crate) fn describe(e: &rustls::Error, tls: &SourceTls, host: &str) -> String {
    let ca = if tls.root_cert.is_some() {
        "the CA certificate given in sslRootCert"
    } else {
        "any CA of the built-in public roots (give the server's CA in sslRootCert)"
    };
    match e {
        rustls::Error::InvalidCertificate(c) => {
            match c {
                CertificateError::UnknownIssuer => format!(
                "certificate verify failed: the server's certificate (or its chain) is not signed \
                 by {ca} (unknown issuer; sslMode {})",
                tls.effective_mode()
            ),
                CertificateError::NotValidForNameContext { presented, .. } => format!(
                "host name mismatch: the server's certificate is valid for {}, not for {host:?}; \
                 connect with one of those names or use sslMode verify-ca",
                if presented.is_empty() {
                    "no name at all".to_string()
                } else {
                    presented
                        .iter()
                        .map(|n| plain_name(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
                CertificateError::NotValidForName => format!(
                    "host name mismatch: the server's certificate does not name {host:?}; connect \
                 with a name the certificate has or use sslMode verify-ca"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("certificate verify failed: the server's certificate has expired ({c})")
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    format!("certificate verify failed: the server's certificate is not valid yet ({c})")
                }
                CertificateError::Revoked => {
                    "certificate verify failed: the server's certificate is revoked".into()
                }
                other => format!("certificate verify failed: {other}"),
            }
        }
        rustls::Error::AlertReceived(a) => format!(
            "the server ended the TLS handshake with alert {a:?} (it may not accept this \
             client's TLS versions or ciphers)"
        ),
        rustls::Error::PeerIncompatible(p) => format!(
            "the server's TLS is incompatible with this client (TLS 1.2 or 1.3 is needed): {p:?}"
        ),
        other => format!("the TLS handshake failed: {other}"),
    }
}

/// `DnsName("db.example.com")` / `IpAddress(10.0.0.5)` (how webpki lists a certificate's
/// names) → `db.example.com` / `10.0.0.5`.
fn plain_name(n: &str) -> &str {
    n.strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
        .or_else(|| {
            n.strip_prefix("IpAddress(")
                .and_then(|r| r.strip_suffix(')'))
        })
        .unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA made for this test (its key was thrown away):
    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500`.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBljCCATugAwIBAgIUPWHf9Qt71Froq3u8ik5x0WYi/KgwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUcmVmcmFjdC11bml0LXRlc3QtY2EwIBcNMjYxMjA0MTMyNDI1
WhgPMjEyNjExMTAxMzI0MjVaMB8xHTAbBgNVBAMMFHJlZnJhY3QtdW5pdC10ZXN0
LWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEoZDysSo+rvhmyRKYVYQNBgrC
/a/mKd1DYDxoXemNRrHMgSmBhtYZWnX3w2tL5Sn+xh2P6LVcY1Oy+tKNFxwG1aNT
MFEwHQYDVR0OBBYEFPnoa4pf2kFmhTGqlvEipPMIGisDMB8GA1UdIwQYMBaAFPno
a4pf2kFmhTGqlvEipPMIGisDMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SQAwRgIhANc6YVU7TCnWlp+ZNArEf9qltBtdqwf7KvrTvr3tKv66AiEAgpJy89Ss
gywvf0bkIh2NylT9lowvub+iw/X6GiHOP3I=
-----END CERTIFICATE-----
";

    #[test]
    fn ssl_modes_parse_and_print_as_libpq_names() {
        for m in SslMode::ALL {
            assert_eq!(SslMode::parse(m.as_str()), Some(m));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        assert_eq!(SslMode::parse("VERIFY-FULL"), None);
        assert_eq!(SslMode::parse("verify_full"), None);
        assert_eq!(SslMode::parse("allow"), None);
        assert_eq!(SslMode::default(), SslMode::Prefer);
        assert!(SslMode::Require.requires_tls() && !SslMode::Prefer.requires_tls());
    }

    #[test]
    fn require_with_a_ca_is_verify_ca() {
        let mut t = SourceTls {
            mode: SslMode::Require,
            root_cert: None,
        };
        assert_eq!(t.effective_mode(), SslMode::Require);
        t.root_cert = Some(CA.into());
        assert_eq!(t.effective_mode(), SslMode::VerifyCa);
        t.mode = SslMode::Prefer;
        assert_eq!(t.effective_mode(), SslMode::Prefer);
        assert!(!format!("{t:?}").contains("BEGIN"));
    }

    #[test]
    fn root_cert_pem_is_checked() {
        let e = parse_root_cert("").unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = parse_root_cert("hello").unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = parse_root_cert("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(e.contains("not valid PEM"), "{e}");
        let key =
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        let e = parse_root_cert(key).unwrap_err();
        assert!(e.contains("never a private key"), "{e}");
        // Valid base64 that is no certificate.
        let e = parse_root_cert("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(e.contains("cannot be parsed"), "{e}");
        assert_eq!(parse_root_cert(CA).unwrap().len(), 1);
        assert_eq!(parse_root_cert(&format!("{CA}\n{CA}")).unwrap().len(), 2);
        let big = "x".repeat(MAX_ROOT_CERT_BYTES + 1);
        assert!(parse_root_cert(&big).unwrap_err().contains("64 KiB"));
    }

    #[test]
    fn client_configs_build_for_every_mode() {
        let plain = SourceTls::disabled();
        assert!(client_config(&plain).unwrap().is_none());
        for mode in [
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            let t = SourceTls {
                mode,
                root_cert: None,
            };
            assert!(client_config(&t).unwrap().is_some(), "{mode}");
            assert!(mysql_ssl_opts(&t).is_some(), "{mode}");
        }
        assert!(mysql_ssl_opts(&plain).is_none());
    }

    #[test]
    fn errors_name_the_certificate_problem() {
        let t = SourceTls {
            mode: SslMode::VerifyFull,
            root_cert: Some(CA.into()),
        };
        let e = describe(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            &t,
            "db",
        );
        assert!(
            e.contains("not signed by the CA certificate given in sslRootCert"),
            "{e}"
        );
        let e = describe(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("127.0.0.2").unwrap(),
                presented: vec![
                    "DnsName(\"localhost\")".into(),
                    "IpAddress(127.0.0.1)".into(),
                ],
            }),
            &t,
            "127.0.0.2",
        );
        assert!(e.starts_with("host name mismatch"), "{e}");
        assert!(
            e.contains("localhost") && e.contains("\"127.0.0.2\""),
            "{e}"
        );
        assert!(server_offers_no_tls(&t)
            .to_string()
            .contains("does not offer TLS"));
    }
}
