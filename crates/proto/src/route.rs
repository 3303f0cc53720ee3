//! Routes: where a tenant's mail goes next.
//!
//! - `smtp://host[:port][?tls=none|opportunistic|required][&ca=/path/ca.pem][&auth=tenant]
//!   [&client_cert=tenant]` — relay over SMTP. `required` verifies the certificate (Web PKI
//!   roots, or the `ca` file for a private CA) and never sends in clear text; `opportunistic`
//!   (the default) encrypts when offered. `auth=tenant` authenticates (SMTP AUTH PLAIN) with the
//!   tenant's sealed `smtp-auth` secret and `client_cert=tenant` presents the tenant's sealed
//!   `client-cert` in the TLS handshake (mutual TLS, e.g. a Microsoft 365 or Google Workspace
//!   connector); both need `tls=required`.
//! - `maildir:///absolute/path` — write each recipient's copy into
//!   `/absolute/path/<recipient>/new/` (the demo tenant, local tests).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// TLS policy of an SMTP route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsPolicy {
    /// Never use STARTTLS.
    None,
    /// STARTTLS when offered, without verifying the certificate.
    Opportunistic,
    /// STARTTLS is mandatory and the certificate must verify.
    Required,
}

/// An SMTP next hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SmtpRoute {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS policy.
    pub tls: TlsPolicy,
    /// Private CA for `tls=required`.
    pub ca: Option<PathBuf>,
    /// Authenticate with the tenant's `smtp-auth` secret.
    pub auth: bool,
    /// Present the tenant's `client-cert` secret.
    pub client_cert: bool,
    /// The tenant whose secrets the connection uses (set when routing; part of the pool key,
    /// so no connection authenticated for one tenant carries another's mail).
    pub owner: Option<i64>,
    /// The name TLS asks for (SNI) and verifies, when `host` is an address: a mail
    /// exchanger's host name in direct delivery. Never parsed from a route.
    pub tls_name: Option<String>,
}

/// Where mail goes next.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Relay over SMTP.
    Smtp(SmtpRoute),
    /// Local Maildir tree.
    Maildir(PathBuf),
    /// Straight to the recipient domain's mail exchangers (RFC 5321 §5), here that domain
    /// (empty in the configuration: `[delivery] external_route = "mx"`). Never parsed from a
    /// route URL: a tenant's mail exchanger is Sekisho itself.
    Mx(String),
}

/// A route URL that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route {url:?}: {reason}")]
pub struct RouteError {
    /// The URL as given.
    pub url: String,
    /// Why it is refused.
    pub reason: String,
}

impl FromStr for Route {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| RouteError {
            url: s.to_string(),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(s).map_err(|e| err(&e.to_string()))?;
        match url.scheme() {
            "smtp" => {
                let host = url
                    .host_str()
                    .ok_or_else(|| err("missing host"))?
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let mut tls = TlsPolicy::Opportunistic;
                let mut ca = None;
                let (mut auth, mut client_cert) = (false, false);
                let tenant_only = |k: &str, v: &str| {
                    if v == "tenant" {
                        Ok(true)
                    } else {
                        Err(err(&format!(
                            "{k} must be \"tenant\" (the tenant's sealed secret)"
                        )))
                    }
                };
                for (k, v) in url.query_pairs() {
                    match k.as_ref() {
                        "tls" => {
                            tls = match v.as_ref() {
                                "none" => TlsPolicy::None,
                                "opportunistic" => TlsPolicy::Opportunistic,
                                "required" => TlsPolicy::Required,
                                _ => {
                                    return Err(err("tls must be none, opportunistic or required"));
                                }
                            }
                        }
                        "ca" => ca = Some(PathBuf::from(v.as_ref())),
                        "auth" => auth = tenant_only("auth", &v)?,
                        "client_cert" => client_cert = tenant_only("client_cert", &v)?,
                        other => {
                            return Err(err(&format!(
                                "unknown option {other:?} (known: tls, ca, auth, client_cert)"
                            )));
                        }
                    }
                }
                if ca.is_some() && tls != TlsPolicy::Required {
                    return Err(err("ca only makes sense with tls=required"));
                }
                if (auth || client_cert) && tls != TlsPolicy::Required {
                    return Err(err(
                        "auth and client_cert need tls=required (credentials never travel in clear text)",
                    ));
                }
                Ok(Route::Smtp(SmtpRoute {
                    host,
                    port: url.port().unwrap_or(25),
                    tls,
                    ca,
                    auth,
                    client_cert,
                    owner: None,
                    tls_name: None,
                }))
            }
            "maildir" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(err("use maildir:///absolute/path (three slashes)"));
                }
                let path = PathBuf::from(url.path());
                if !path.is_absolute() || url.path().len() < 2 {
                    return Err(err("the maildir path must be absolute"));
                }
                Ok(Route::Maildir(path))
            }
            _ => Err(err("scheme must be smtp:// or maildir://")),
        }
    }
}

impl Route {
    /// A route a portal user may set: a valid `smtp://` route without a CA file (a Maildir
    /// route or a CA file names a path on the mail node, which only the local operator may
    /// choose). Returns the route as given, trimmed, or why it is refused.
    pub fn for_portal(route: &str) -> Result<String, String> {
        let route = route.trim();
        match route.parse::<Route>() {
            Ok(Route::Smtp(r)) if r.ca.is_none() => Ok(route.to_string()),
            Ok(Route::Smtp(_)) => Err(
                "a CA file names a path on the mail node: set it with the CLI (sekisho tenant set-route)"
                    .into(),
            ),
            Ok(_) => Err(
                "the portal sets smtp:// routes only (a Maildir route is a local path: use the CLI)"
                    .into(),
            ),
            Err(e) => Err(format!(
                "not a route: {} (smtp://host[:port]?tls=none|opportunistic|required[&auth=tenant][&client_cert=tenant])",
                e.reason
            )),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Maildir(p) => write!(f, "maildir://{}", p.display()),
            Route::Mx(d) if d.is_empty() => f.write_str("mx"),
            Route::Mx(d) => write!(f, "mx:{d}"),
            Route::Smtp(r) => {
                let tls = match r.tls {
                    TlsPolicy::None => "none",
                    TlsPolicy::Opportunistic => "opportunistic",
                    TlsPolicy::Required => "required",
                };
                let host = if r.host.contains(':') {
                    format!("[{}]", r.host)
                } else {
                    r.host.clone()
                };
                write!(f, "smtp://{host}:{}?tls={tls}", r.port)?;
                if let Some(ca) = &r.ca {
                    write!(f, "&ca={}", ca.display())?;
                }
                if r.auth {
                    f.write_str("&auth=tenant")?;
                }
                if r.client_cert {
                    f.write_str("&client_cert=tenant")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_routes() {
        let r: Route = "smtp://mail.example.com:2600?tls=required&ca=/etc/ca.pem"
            .parse()
            .unwrap();
        assert_eq!(
            r,
            Route::Smtp(SmtpRoute {
                host: "mail.example.com".into(),
                port: 2600,
                tls: TlsPolicy::Required,
                ca: Some("/etc/ca.pem".into()),
                auth: false,
                client_cert: false,
                owner: None,
                tls_name: None,
            })
        );
        assert_eq!(
            r.to_string(),
            "smtp://mail.example.com:2600?tls=required&ca=/etc/ca.pem"
        );
        let r: Route = "smtp://[::1]".parse().unwrap();
        assert_eq!(r.to_string(), "smtp://[::1]:25?tls=opportunistic");
        let r: Route = "smtp://mx.tenant.mail.protection.outlook.com?tls=required&client_cert=tenant&auth=tenant"
            .parse()
            .unwrap();
        assert_eq!(
            r.to_string(),
            "smtp://mx.tenant.mail.protection.outlook.com:25?tls=required&auth=tenant&client_cert=tenant"
        );
        let r: Route = "maildir:///var/mail/demo".parse().unwrap();
        assert_eq!(r, Route::Maildir("/var/mail/demo".into()));
    }

    #[test]
    fn the_portal_sets_smtp_routes_without_local_paths() {
        assert!(Route::for_portal("smtp://mx.example.net:25?tls=required&auth=tenant").is_ok());
        assert!(Route::for_portal(" smtp://[2001:db8::1]:587?tls=opportunistic ").is_ok());
        for bad in [
            "maildir:///etc/cron.d",
            "smtp://mx.example.net?tls=required&ca=/etc/sekisho/vault/kek",
            "smtp://mx.example.net?auth=tenant",
            "http://mx.example.net",
            "smtp://",
            "not a url",
        ] {
            assert!(Route::for_portal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_routes_with_a_reason() {
        for (url, reason) in [
            ("smtp://h?tls=maybe", "tls must be"),
            ("smtp://h?ca=/x", "ca only makes sense"),
            ("smtp://h?foo=1", "unknown option"),
            ("smtp://h?auth=tenant", "need tls=required"),
            (
                "smtp://h?tls=required&client_cert=yes",
                "must be \"tenant\"",
            ),
            ("maildir://relative/path", "three slashes"),
            ("http://h", "scheme must be"),
            ("not a url", "relative URL"),
        ] {
            let e = url.parse::<Route>().unwrap_err();
            assert!(e.reason.contains(reason), "{url}: {}", e.reason);
        }
    }
}
