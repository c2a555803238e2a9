//! Connection strings: libpq key/value strings and `postgresql://` URLs, read by
//! rust-postgres's own parser, except for the TLS settings it does not know
//! (`sslmode=verify-ca`/`verify-full`, `sslrootcert`), which are taken out first.
use std::str::FromStr;

use crate::error::{Error, Result};

/// How the connection uses TLS, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, the certificate not checked (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate checked only if `sslrootcert` is given (as
    /// libpq does when a root certificate file is present).
    Require,
    /// TLS, the certificate chain checked against `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the host name must match the certificate.
    VerifyFull,
}

/// A parsed connection string.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    /// PEM file of the certificates to trust, for the verifying modes.
    pub ssl_root_cert: Option<String>,
}

/// Parses `conninfo`. The error names what is wrong, never the password.
pub fn parse(conninfo: &str) -> Result<ConnInfo> {
    let trimmed = conninfo.trim();
    let is_url = trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://");
    let (rest, ssl_mode, ssl_root_cert) = if is_url {
        take_url_params(trimmed)?
    } else {
        take_kv_params(trimmed)?
    };
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| {
        Error::Invalid(format!(
            "invalid PostgreSQL connection string: {}",
            super::pool::describe(&e)
        ))
    })?;
    let mode = match ssl_mode.as_deref() {
        None | Some("prefer") | Some("allow") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "invalid PostgreSQL connection string: sslmode={other:?} is not one of disable, allow, prefer, \
                 require, verify-ca, verify-full"
            )))
        }
    };
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && ssl_root_cert.is_none() {
        return Err(Error::Invalid(format!(
            "sslmode={} needs sslrootcert=<PEM file of the certificates to trust>",
            ssl_mode.unwrap_or_default()
        )));
    }
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    if config.get_hosts().is_empty() {
        // libpq's default: the local unix socket.
        config.host_path("/var/run/postgresql");
    }
    if config.get_user().is_none() {
        if let Ok(user) = std::env::var("PGUSER").or_else(|_| std::env::var("USER")) {
            config.user(&user);
        }
    }
    Ok(ConnInfo {
        config,
        ssl_mode: mode,
        ssl_root_cert,
    })
}

type Taken = (String, Option<String>, Option<String>);

fn take_url_params(url: &str) -> Result<Taken> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let mut kept = Vec::new();
    let (mut mode, mut root) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = Some(percent_decode(v)?),
            "sslrootcert" => root = Some(percent_decode(v)?),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, mode, root))
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = byte else {
                return Err(Error::Invalid(format!(
                    "invalid PostgreSQL URL: bad percent-escape in {s:?}"
                )));
            };
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Error::Invalid(format!("invalid PostgreSQL URL: {s:?} is not UTF-8")))
}

/// Splits a key/value string into its pairs (libpq's quoting: single quotes, backslash
/// escapes), takes out the TLS settings, and writes the rest back, every value quoted.
fn take_kv_params(s: &str) -> Result<Taken> {
    let mut chars = s.chars().peekable();
    let mut kept = Vec::new();
    let (mut mode, mut root) = (None, None);
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(Error::Invalid(format!(
                "invalid PostgreSQL connection string: expected `=` after {key:?} (use key=value pairs or a \
                 postgresql:// URL)"
            )));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(Error::Invalid(format!(
                            "invalid PostgreSQL connection string: unterminated quote in the value of {key:?}"
                        )))
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        match key.as_str() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => kept.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))),
        }
    }
    Ok((kept.join(" "), mode, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_and_url_forms() {
        let c = parse("host=db.example port=5433 user=u password='p w' dbname=x sslmode=require").unwrap();
        assert_eq!(c.ssl_mode, SslMode::Require);
        assert_eq!(c.config.get_password(), Some(&b"p w"[..]));
        assert_eq!(c.config.get_ports(), &[5433]);
        let c = parse("postgresql://u:p@127.0.0.1:6000/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem").unwrap();
        assert_eq!(c.ssl_mode, SslMode::VerifyFull);
        assert_eq!(c.ssl_root_cert.as_deref(), Some("/tmp/ca.pem"));
        assert_eq!(c.config.get_dbname(), Some("db"));
    }

    #[test]
    fn bad_strings_are_refused_with_the_reason() {
        let e = parse("host=x sslmode=sometimes").unwrap_err().to_string();
        assert!(e.contains("sslmode"), "{e}");
        let e = parse("host=x sslmode=verify-full").unwrap_err().to_string();
        assert!(e.contains("sslrootcert"), "{e}");
        let e = parse("hostx").unwrap_err().to_string();
        assert!(e.contains("expected `=`"), "{e}");
        assert!(parse("host=x bogus=1").is_err());
    }
}
