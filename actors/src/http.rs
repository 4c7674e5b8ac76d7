//! HTTP client construction shared by the transmitter and the health checker: one rustls stack
//! (ring crypto, TLS 1.2 minimum), awc's defaults replaced by ours, endpoint URLs (credentials in
//! them become HTTP Basic auth; logs only ever see them redacted), redirect targets (same origin
//! only) and webhook-answer parsing.
//!
//! It owns how we talk HTTP, not what a delivery means (that is the transmitter's).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use awc::http::header::{self, HeaderValue};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::limits::MAX_VISIBILITY_TIMEOUT_SECS;

/// How long an idle webhook connection is kept for reuse. Shorter than the common server-side
/// idle timeouts (Node.js closes after 5 s), so carrier does not send a message down a connection
/// the worker is closing at that moment (which would turn into a spurious Nack).
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(4);

/// The User-Agent carrier sends (awc's own default header is switched off).
pub const USER_AGENT: &str = concat!("carrier/", env!("CARGO_PKG_VERSION"));

/// Parses and checks an `http://` or `https://` URL with a host (scheme in any case).
pub fn parse_http_url(value: &str) -> Result<awc::http::Uri, String> {
    let uri: awc::http::Uri = value.parse().map_err(|e| format!("not a URL ({e})"))?;
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(uri)
}

/// `url` with any password and query string replaced by `***`: what logs, stats and config errors
/// may show of a URL (tokens live there). Text that is not a URL is shown as `***` whole if it
/// has an `@` or `?`, else unchanged.
pub fn redact(value: &str) -> String {
    let Ok(mut url) = url::Url::parse(value) else {
        return if value.contains(['@', '?']) {
            "***".into()
        } else {
            value.to_string()
        };
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        url.set_query(Some("***"));
    }
    url.set_fragment(None);
    url.to_string()
}

/// An endpoint carrier calls (the webhook, the health check), ready to use: the URL without its
/// credentials, the `Authorization` they stand for (HTTP Basic, as Go's client sends for
/// `user:pass@` URLs), and a redacted form for logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL requests go to, without user or password.
    pub url: String,
    /// `Basic <base64(user:password)>` when the URL had credentials.
    pub authorization: Option<String>,
    /// What logs show: no password, no query string.
    pub redacted: String,
    /// `https` (which needs CA certificates unless verification is off).
    pub https: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl Endpoint {
    pub fn parse(value: &str) -> Result<Endpoint, String> {
        parse_http_url(value)?;
        let mut url = url::Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let authorization = (!url.username().is_empty() || url.password().is_some()).then(|| {
            use base64::Engine as _;
            let user = decode(url.username());
            let password = decode(url.password().unwrap_or(""));
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(Endpoint {
            https: url.scheme() == "https",
            url: url.to_string(),
            authorization,
            redacted: redact(value),
        })
    }
}

/// The rustls configurations the endpoints need: one that verifies certificates (with the
/// system's CA bundle once any verified endpoint is `https://`), and one that accepts any, built
/// only when an endpoint asks for it.
#[derive(Clone)]
pub struct TlsConfigs {
    verify: Arc<ClientConfig>,
    insecure: Option<Arc<ClientConfig>>,
}

impl TlsConfigs {
    /// From each endpoint's `(https, skip_verify)`.
    pub fn new(endpoints: impl IntoIterator<Item = (bool, bool)>) -> Result<TlsConfigs, String> {
        let (mut roots, mut any_insecure) = (false, false);
        for (https, skip_verify) in endpoints {
            roots |= https && !skip_verify;
            any_insecure |= skip_verify;
        }
        Ok(TlsConfigs {
            verify: tls_config(roots, false)?,
            insecure: any_insecure.then(|| tls_config(false, true)).transpose()?,
        })
    }

    /// The configuration for an endpoint with this `skip_verify`.
    pub fn get(&self, skip_verify: bool) -> Arc<ClientConfig> {
        match (&self.insecure, skip_verify) {
            (Some(insecure), true) => insecure.clone(),
            _ => self.verify.clone(),
        }
    }
}

/// The rustls configuration for every outgoing webhook and health-check connection.
///
/// The system's CA bundle is loaded only when an `https://` URL needs it (it costs memory), and
/// `skip_verify` (`CARRIER_WEBHOOK_TLS_INSECURE_SKIP_VERIFY`) accepts any certificate. An https
/// endpoint with no CA certificate to be found is an error: every delivery would fail.
pub fn tls_config(load_roots: bool, skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3");
    let mut config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        if load_roots {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return Err(
                    "an https endpoint is configured, but no CA certificates were found \
                    (looked at SSL_CERT_FILE, SSL_CERT_DIR and the system's CA bundle, e.g. \
                    /etc/ssl/certs/ca-certificates.crt); add them to the image, or point \
                    SSL_CERT_FILE at a bundle"
                        .into(),
                );
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Why a `307`/`308` redirect is not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectRefused {
    /// The `Location` is not a URL, not even a relative one.
    Invalid,
    /// It leads to another origin; nothing may be sent there. The target, redacted for logs.
    OtherOrigin(String),
}

/// Where a `307`/`308` redirect's `Location` leads from the request to `current`, if carrier may
/// follow it: only within `endpoint`'s origin (scheme, host and port, a default port counted as
/// itself), so the body, `Authorization` and signature never reach another server. A relative
/// `Location` (`next`, `../x`, `/x`, `?q`) is resolved against `current` as RFC 3986 says. The
/// target carries no fragment and no credentials (carrier sends its own `Authorization`).
pub fn redirect_target(
    endpoint: &url::Url,
    current: &url::Url,
    location: &str,
) -> Result<url::Url, RedirectRefused> {
    let mut target = current
        .join(location)
        .map_err(|_| RedirectRefused::Invalid)?;
    if target.origin() != endpoint.origin() {
        return Err(RedirectRefused::OtherOrigin(redact(target.as_str())));
    }
    target.set_fragment(None);
    let _ = target.set_username("");
    let _ = target.set_password(None);
    Ok(target)
}

/// What an HTTP client is for: the two differ in redirects and in who bounds a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Webhook POSTs: no redirects followed by awc (the transmitter follows 307/308 itself) and no
    /// awc timeout: the transmitter bounds the whole delivery, redirects and body included, with
    /// one deadline (one timer per delivery, not three).
    Webhook,
    /// Health-check GETs: up to 3 redirects, as Go does; the timeout bounds each check.
    HealthCheck,
}

/// An awc client with our settings: `timeout` for connecting (and, for health checks, the whole
/// request; awc's default is 5 s), no `Date` header, carrier's User-Agent, at most
/// `max_connections` (kept alive for reuse up to [`IDLE_CONNECTION_TIMEOUT`]).
pub fn client(
    tls: Arc<ClientConfig>,
    timeout: Duration,
    max_connections: usize,
    purpose: Purpose,
) -> awc::Client {
    let connector = awc::Connector::new()
        .rustls_0_23(tls)
        .timeout(timeout)
        .conn_keep_alive(IDLE_CONNECTION_TIMEOUT)
        .limit(max_connections.max(1));
    let builder = awc::Client::builder().connector(connector);
    let builder = match purpose {
        Purpose::Webhook => builder.disable_redirects().disable_timeout(),
        Purpose::HealthCheck => builder.max_redirects(3).timeout(timeout),
    };
    builder
        .no_default_headers()
        .add_default_header((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)))
        .finish()
}

/// When a `Retry-After` value allows the next attempt: delay-seconds or an HTTP-date, clamped to
/// `[now, now + 12 h]`. `None` when the value is neither (the answer is then a Nack).
pub fn retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    let max = now + Duration::from_secs(MAX_VISIBILITY_TIMEOUT_SECS);
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // A huge number of digits overflows u64: that is "as late as allowed".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(now + Duration::from_secs(secs.min(MAX_VISIBILITY_TIMEOUT_SECS)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.clamp(now, max))
}

/// Accepts any server certificate: what `CARRIER_WEBHOOK_TLS_INSECURE_SKIP_VERIFY=true` asks for.
/// Signatures are still checked so the handshake itself stays sound.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("30", now), Some(now + Duration::from_secs(30)));
        assert_eq!(retry_after(" 0 ", now), Some(now));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&date, now), Some(now + Duration::from_secs(90)));
    }

    #[test]
    fn retry_after_is_clamped_to_twelve_hours_and_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let max = now + Duration::from_secs(43_200);
        assert_eq!(retry_after("999999", now), Some(max));
        assert_eq!(retry_after("99999999999999999999999999", now), Some(max));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(retry_after(&past, now), Some(now));
    }

    #[test]
    fn malformed_retry_after_is_none() {
        let now = SystemTime::now();
        for bad in ["", "-5", "1.5", "soon", "30s", "Tue, 99 Foo 2020"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn redirects_are_followed_within_the_endpoint_s_origin_only() {
        use RedirectRefused::{Invalid, OtherOrigin};
        let endpoint = url::Url::parse("http://127.0.0.1:9000/hook/in?k=v").unwrap();
        let https = url::Url::parse("https://example.com/hook/in").unwrap();
        let away = |to: &str| Err(OtherOrigin(to.to_string()));
        let to = |to: &str| Ok(to.to_string());
        let table: [(&url::Url, &str, Result<String, RedirectRefused>); 21] = [
            // Relative locations, resolved against the request's URL.
            (&endpoint, "next", to("http://127.0.0.1:9000/hook/next")),
            (&endpoint, "../x", to("http://127.0.0.1:9000/x")),
            (&endpoint, "/x", to("http://127.0.0.1:9000/x")),
            (&endpoint, "?q=1", to("http://127.0.0.1:9000/hook/in?q=1")),
            (&endpoint, "", to("http://127.0.0.1:9000/hook/in?k=v")),
            (
                &endpoint,
                "next#part",
                to("http://127.0.0.1:9000/hook/next"),
            ),
            (&endpoint, "/a b", to("http://127.0.0.1:9000/a%20b")),
            // Absolute, same origin (credentials in it are dropped).
            (
                &endpoint,
                "http://127.0.0.1:9000/y",
                to("http://127.0.0.1:9000/y"),
            ),
            (
                &endpoint,
                "HTTP://127.0.0.1:9000/y",
                to("http://127.0.0.1:9000/y"),
            ),
            (
                &endpoint,
                "http://u:p@127.0.0.1:9000/y",
                to("http://127.0.0.1:9000/y"),
            ),
            (
                &endpoint,
                "//127.0.0.1:9000/y",
                to("http://127.0.0.1:9000/y"),
            ),
            // A default port is the same port, written or not.
            (
                &https,
                "https://EXAMPLE.com:443/z",
                to("https://example.com/z"),
            ),
            (&https, "//example.com/z", to("https://example.com/z")),
            // Another origin: nothing is sent there; logs see it redacted.
            (
                &endpoint,
                "http://127.0.0.1:9001/hook",
                away("http://127.0.0.1:9001/hook"),
            ),
            (
                &endpoint,
                "http://localhost:9000/hook",
                away("http://localhost:9000/hook"),
            ),
            (
                &endpoint,
                "https://127.0.0.1:9000/hook",
                away("https://127.0.0.1:9000/hook"),
            ),
            (
                &endpoint,
                "//evil:9000/x?t=secret",
                away("http://evil:9000/x?***"),
            ),
            (&endpoint, "http://u:pw@evil/x", away("http://u:***@evil/x")),
            (&https, "http://example.com/z", away("http://example.com/z")),
            (
                &https,
                "https://example.com:8443/z",
                away("https://example.com:8443/z"),
            ),
            (&endpoint, "http://[::1", Err(Invalid)),
        ];
        for (current, location, expected) in table {
            // First hop: the request went to the endpoint itself.
            let got = redirect_target(current, current, location).map(|u| u.to_string());
            assert_eq!(got, expected, "{current} + {location:?}");
        }
        // A later hop resolves against the URL it answers, and is judged by the endpoint's origin.
        let hop = url::Url::parse("http://127.0.0.1:9000/deep/er").unwrap();
        assert_eq!(
            redirect_target(&endpoint, &hop, "x").map(|u| u.to_string()),
            to("http://127.0.0.1:9000/deep/x")
        );
        // Non-HTTP schemes are other origins too.
        assert!(matches!(
            redirect_target(&endpoint, &endpoint, "file:///etc/passwd"),
            Err(OtherOrigin(_))
        ));
    }

    #[test]
    fn credentials_in_a_url_become_basic_auth_and_leave_the_url() {
        let e = Endpoint::parse("http://us%40er:p%3Ass@127.0.0.1:9000/hook?token=abc").unwrap();
        assert_eq!(e.url, "http://127.0.0.1:9000/hook?token=abc");
        // base64("us@er:p:ss")
        assert_eq!(e.authorization.as_deref(), Some("Basic dXNAZXI6cDpzcw=="));
        assert_eq!(e.redacted, "http://us%40er:***@127.0.0.1:9000/hook?***");
        assert!(!e.https);
        let plain = Endpoint::parse("HTTPS://example.com/x").unwrap();
        assert_eq!(plain.authorization, None);
        assert!(plain.https, "the scheme is case-insensitive");
        assert_eq!(format!("{plain:?}"), "https://example.com/x");
    }

    #[test]
    fn redaction_hides_passwords_and_query_strings_only() {
        assert_eq!(redact("http://host:1/path"), "http://host:1/path");
        assert_eq!(
            redact("http://u:secret@host/p?k=v#f"),
            "http://u:***@host/p?***"
        );
        assert_eq!(redact("not a url?secret"), "***");
        assert_eq!(redact("plain words"), "plain words");
    }

    #[test]
    fn urls_need_http_scheme_and_host() {
        assert!(parse_http_url("http://localhost:9000/hook").is_ok());
        assert!(parse_http_url("https://example.com").is_ok());
        assert!(parse_http_url("HTTP://example.com").is_ok());
        assert!(parse_http_url("localhost:9000").is_err());
        assert!(parse_http_url("ftp://x").is_err());
        assert!(parse_http_url("not a url").is_err());
    }
}
