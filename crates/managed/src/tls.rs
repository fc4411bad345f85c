//! TLS of managed servers: one certificate authority per installation (created at the first
//! start, its private key and certificate in the secret store, never in a plain file), a server
//! certificate issued from it for every server start (names `localhost` and the host it answers
//! on, IP `127.0.0.1`), and the rustls client configuration Refract's own connections (login
//! checks, replica health) use to verify the servers against that CA.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::hooks::SecretVault;
use crate::os::{self, ServiceUser};

/// Secret-store name of the CA's private key (PEM).
pub const CA_KEY_SECRET: &str = "managed/ca/key";
/// Secret-store name of the CA's certificate (PEM; public, kept beside its key).
pub const CA_CERT_SECRET: &str = "managed/ca/cert";
/// The CA's subject common name.
const CA_NAME: &str = "Refract managed database servers CA";
/// File names of a server's certificate and key in its data directory (0600, its user's).
pub const SERVER_CERT_FILE: &str = "server.crt";
/// See [`SERVER_CERT_FILE`].
pub const SERVER_KEY_FILE: &str = "server.key";
/// The CA certificate beside them (servers that want a CA file: MariaDB's `ssl-ca`, Redis's
/// `tls-ca-cert-file`).
pub const CA_FILE: &str = "ca.crt";

/// The installation's certificate authority.
pub struct Ca {
    cert_pem: String,
    key: KeyPair,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca { .. }")
    }
}

/// The CA's parameters: the same every time, so the issuer rebuilt from the stored key names
/// exactly the subject (and key identifier) of the stored certificate.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "Refract");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Fixed dates: the issuer rebuilt from the key on a later start is the same certificate.
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(p)
}

/// The date `days` from today (UTC): year, month, day.
fn day(days: i64) -> (i32, u8, u8) {
    use chrono::Datelike;
    let d = chrono::Utc::now().date_naive() + chrono::TimeDelta::days(days);
    (d.year(), d.month() as u8, d.day() as u8)
}

impl Ca {
    /// The installation's CA from the secret store, created (and stored) when absent.
    pub fn load_or_create(vault: &dyn SecretVault) -> anyhow::Result<Ca> {
        if let (Some(key), Some(cert)) = (vault.get(CA_KEY_SECRET), vault.get(CA_CERT_SECRET)) {
            let key = KeyPair::from_pem(&key).context("the stored managed-server CA key")?;
            return Ca::new(cert, key);
        }
        let key = KeyPair::generate().context("generate the managed-server CA key")?;
        let cert = ca_params()?.self_signed(&key)?.pem();
        // The certificate first: a key without its certificate would be replaced next start.
        vault.put(CA_CERT_SECRET, &cert)?;
        vault.put(CA_KEY_SECRET, &key.serialize_pem())?;
        tracing::info!("created the certificate authority of managed database servers");
        Ca::new(cert, key)
    }

    fn new(cert_pem: String, key: KeyPair) -> anyhow::Result<Ca> {
        let client = client_config(&cert_pem)?;
        Ok(Ca {
            cert_pem,
            key,
            client,
        })
    }

    /// The CA certificate (PEM), what clients verify servers with.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A rustls client configuration trusting only this CA (full verification, host included).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// A new server certificate for `names` (DNS names or IP addresses) and its key, both PEM.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<(String, String)> {
        let issuer = ca_params()?.self_signed(&self.key)?;
        let mut p =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let ((y0, m0, d0), (y1, m1, d1)) = (day(-1), day(397));
        p.not_before = rcgen::date_time_ymd(y0, m0, d0);
        p.not_after = rcgen::date_time_ymd(y1, m1, d1);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a certificate for `names` (the names a server answers on) and writes it, its key
    /// and the CA certificate into `dir` (0600, owned by `user`). Called on every server start,
    /// so certificates are renewed with each start.
    pub fn write_server_files(
        &self,
        dir: &Path,
        user: &ServiceUser,
        names: &[&str],
    ) -> anyhow::Result<()> {
        let (cert, key) = self.issue(names)?;
        os::write_owned_file(&dir.join(SERVER_CERT_FILE), cert.as_bytes(), user)?;
        os::write_owned_file(&dir.join(SERVER_KEY_FILE), key.as_bytes(), user)?;
        os::write_owned_file(&dir.join(CA_FILE), self.cert_pem.as_bytes(), user)?;
        Ok(())
    }
}

/// Installs ring as the process's rustls provider (what `mysql_async` builds its TLS with);
/// a no-op when one is installed already.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A rustls client configuration trusting the CA certificates in `pem`.
pub fn client_config(pem: &str) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots
            .add(c.context("a CA certificate in PEM")?)
            .context("trust the CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connects a TLS stream over `stream` to `host`, verified against `config`.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    config: Arc<ClientConfig>,
    host: &str,
    stream: S,
) -> io::Result<tokio_rustls::client::TlsStream<S>> {
    let name = ServerName::try_from(host.to_string()).map_err(io::Error::other)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

/// `tokio-postgres` TLS over rustls with one client configuration (`verify-full`).
#[derive(Clone)]
pub struct PgTls(pub Arc<ClientConfig>);

/// One connection's connector (see [`PgTls`]).
pub struct PgTlsConnect {
    config: Arc<ClientConfig>,
    host: String,
}

impl tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> for PgTls {
    type Stream = PgTlsStream;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, io::Error> {
        Ok(PgTlsConnect {
            config: self.0.clone(),
            host: domain.to_string(),
        })
    }
}

impl tokio_postgres::tls::TlsConnect<tokio_postgres::Socket> for PgTlsConnect {
    type Stream = PgTlsStream;
    type Error = io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = io::Result<PgTlsStream>> + Send + 'static>>;

    fn connect(self, stream: tokio_postgres::Socket) -> Self::Future {
        Box::pin(async move {
            let s = connect(self.config, &self.host, stream).await?;
            Ok(PgTlsStream(Box::new(s)))
        })
    }
}

/// A TLS stream for `tokio-postgres` (no channel binding: SCRAM without `-PLUS`).
pub struct PgTlsStream(Box<tokio_rustls::client::TlsStream<tokio_postgres::Socket>>);

impl AsyncRead for PgTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
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

impl tokio_postgres::tls::TlsStream for PgTlsStream {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::MemoryVault;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn the_ca_is_created_once_and_issues_verifiable_certificates() {
        let vault = MemoryVault::default();
        let ca = Ca::load_or_create(&vault).unwrap();
        let again = Ca::load_or_create(&vault).unwrap();
        assert_eq!(
            ca.cert_pem(),
            again.cert_pem(),
            "a second start keeps the CA"
        );
        assert!(vault.get(CA_KEY_SECRET).unwrap().contains("PRIVATE KEY"));
        // A certificate issued by the reloaded CA verifies against the stored CA certificate.
        let (cert, _key) = again.issue(&["localhost", "127.0.0.1"]).unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new({
                let mut r = rustls::RootCertStore::empty();
                r.add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
                    .unwrap();
                r
            }),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for name in ["127.0.0.1", "localhost"] {
            verifier
                .verify_server_cert(&der, &[], &ServerName::try_from(name).unwrap(), &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let wrong = verifier.verify_server_cert(
            &der,
            &[],
            &ServerName::try_from("example.com").unwrap(),
            &[],
            now,
        );
        assert!(wrong.is_err(), "a name the certificate lacks is refused");
        // Another installation's CA does not verify it.
        let other = Ca::load_or_create(&MemoryVault::default()).unwrap();
        assert_ne!(other.cert_pem(), ca.cert_pem());
    }
}
