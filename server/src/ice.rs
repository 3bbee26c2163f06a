//! The ICE servers a peer is given in its join answer: the one place they
//! come from. whis's own STUN server (named by the host the page used), the
//! operator's `--ice-server` URLs, TURN with short-lived credentials
//! (coturn's `use-auth-secret`), and the transport policy (`--relay-only`).
//! Also the checks of those flags, so a bad one is an error at start.
//!
//! Order in `ice_servers`: whis's STUN first (reachable wherever the page
//! is), then `--ice-server`s, then TURN with this peer's credential.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use whis_core::turn;

/// One entry of `RTCConfiguration.iceServers`, as the browser takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// One URL is sent as a string, several as a list (both are valid).
    #[serde(serialize_with = "one_or_many")]
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

fn one_or_many<S: Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    match urls {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

/// A secret that never shows up in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// An ICE server from `--ice-server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraServer {
    pub url: String,
    /// `turn:`/`turns:` only: (username, credential) from the URL's user part.
    pub credentials: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Turn {
    /// `turn:`/`turns:` URLs of one coturn (or several sharing the secret).
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: Secret,
}

/// What the operator configured (tests set these fields directly).
#[derive(Debug, Clone, Default)]
pub struct IceSettings {
    /// Where whis answers STUN (UDP); `None` with `--no-stun`.
    pub stun: Option<SocketAddr>,
    pub servers: Vec<ExtraServer>,
    pub turn: Option<Turn>,
    /// Visitors only use relayed candidates: peers never learn each other's address.
    pub relay_only: bool,
}

impl IceSettings {
    /// Whether some TURN server is configured (a relay-only visitor needs one).
    pub fn has_turn(&self) -> bool {
        self.turn.is_some() || self.servers.iter().any(|s| s.credentials.is_some())
    }

    /// Check the combination of flags; `secret` comes from `--turn-secret`
    /// or `WHIS_TURN_SECRET`.
    pub fn from_flags(
        stun: Option<SocketAddr>,
        ice_servers: &[String],
        turn_urls: &[String],
        secret: Option<String>,
        relay_only: bool,
    ) -> Result<IceSettings, String> {
        let servers = ice_servers
            .iter()
            .map(|u| parse_ice_server(u))
            .collect::<Result<Vec<_>, _>>()?;
        let turn = match (turn_urls.is_empty(), secret) {
            (true, None) => None,
            (true, Some(_)) => {
                return Err(
                    "--turn-secret (or WHIS_TURN_SECRET) is set but no --turn-url: \
                            give the TURN server's URL, e.g. --turn-url turn:turn.example.com:3478"
                        .into(),
                )
            }
            (false, None) => {
                return Err("--turn-url needs the secret coturn shares with whis \
                            (its static-auth-secret): --turn-secret S or WHIS_TURN_SECRET"
                    .into())
            }
            (false, Some(s)) if s.is_empty() => {
                return Err("the TURN secret (--turn-secret or WHIS_TURN_SECRET) is empty".into())
            }
            (false, Some(s)) => Some(Turn {
                urls: turn_urls
                    .iter()
                    .map(|u| parse_turn_url(u))
                    .collect::<Result<_, _>>()?,
                secret: Secret::new(s),
            }),
        };
        let settings = IceSettings {
            stun,
            servers,
            turn,
            relay_only,
        };
        if relay_only && !settings.has_turn() {
            return Err(
                "--relay-only needs a TURN server (--turn-url with --turn-secret, or \
                        --ice-server turn:USER:PASSWORD@HOST:PORT): without a relay no visitor \
                        could reach another"
                    .into(),
            );
        }
        Ok(settings)
    }
}

impl IceSettings {
    /// `iceTransportPolicy` for the agent: `"relay"` in privacy mode, else `"all"`.
    pub fn transport_policy(&self) -> &'static str {
        if self.relay_only {
            "relay"
        } else {
            "all"
        }
    }
}

/// The `ice_servers` of a join answer for `peer_id`, whose page reached whis
/// as `host_header` (the HTTP `Host`, port and all). `stun_bound` is where
/// whis's STUN socket listens, if it does; `now` sets the TURN credential's
/// expiry.
pub fn for_join(
    settings: &IceSettings,
    stun_bound: Option<SocketAddr>,
    host_header: Option<&str>,
    peer_id: &str,
    now: SystemTime,
) -> Vec<IceServer> {
    let plain = |url: String| IceServer {
        urls: vec![url],
        username: None,
        credential: None,
    };
    let mut servers = Vec::new();
    if let Some(bound) = stun_bound {
        let host = host_header
            .and_then(host_without_port)
            .unwrap_or_else(|| url_host(bound.ip()));
        servers.push(plain(format!("stun:{host}:{}", bound.port())));
    }
    for s in &settings.servers {
        servers.push(IceServer {
            username: s.credentials.as_ref().map(|(u, _)| u.clone()),
            credential: s.credentials.as_ref().map(|(_, p)| p.clone()),
            ..plain(s.url.clone())
        });
    }
    if let Some(t) = &settings.turn {
        let expires = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(turn::CREDENTIAL_TTL)
            .as_secs();
        let c = turn::credential(t.secret.expose(), expires, peer_id);
        servers.push(IceServer {
            urls: t.urls.clone(),
            username: Some(c.username),
            credential: Some(c.credential),
        });
    }
    servers
}

/// An IP as it stands in a URL's host part (IPv6 in brackets). An
/// unspecified address (whis bound to 0.0.0.0) becomes loopback.
fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".into(),
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".into(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The host of a `Host` header without its port, if it is a plain host
/// name, IPv4 or bracketed IPv6 address (anything else is not echoed into
/// a URL the browser will parse).
pub fn host_without_port(header: &str) -> Option<String> {
    host_of(header.trim()).ok().map(|h| h.to_ascii_lowercase())
}

/// `HOST[:PORT]` → `HOST` (a DNS name, IPv4, or IPv6 in brackets), or why not.
fn host_of(hostport: &str) -> Result<&str, &'static str> {
    const BAD_PORT: &str = "the port must be a number from 1 to 65535";
    let (host, port) = if hostport.starts_with('[') {
        let end = hostport
            .find(']')
            .ok_or("an IPv6 host needs its closing ']'")?;
        let after = &hostport[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(BAD_PORT)?),
        };
        (&hostport[..=end], port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if port.is_some_and(|p| !is_port(p)) {
        return Err(BAD_PORT);
    }
    if !valid_host(host) {
        return Err("not a host name or IP address (no //, paths or spaces: stun:HOST:PORT)");
    }
    Ok(host)
}

fn is_port(s: &str) -> bool {
    s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok_and(|p| p > 0)
}

/// A DNS name, an IPv4 address or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `HOST[:PORT][?transport=udp|tcp]` after an ICE URL's scheme (RFC 7064,
/// RFC 7065); the query only on TURN URLs.
fn check_host_port_query(rest: &str, turn: bool, whole: &str) -> Result<(), String> {
    let (hostport, query) = match rest.split_once('?') {
        Some((hp, q)) => (hp, Some(q)),
        None => (rest, None),
    };
    if let Some(q) = query {
        if !turn || !(q == "transport=udp" || q == "transport=tcp") {
            return Err(format!(
                "{whole:?}: the only query an ICE URL may carry is ?transport=udp or \
                 ?transport=tcp, on a turn: or turns: URL"
            ));
        }
    }
    host_of(hostport)
        .map(|_| ())
        .map_err(|why| format!("{whole:?}: {why}"))
}

/// Check one `--ice-server`: `stun:HOST[:PORT]`, or a TURN server with its
/// long-term credentials as `turn:USER:PASSWORD@HOST[:PORT][?transport=…]`
/// (browsers refuse a TURN URL without them).
pub fn parse_ice_server(url: &str) -> Result<ExtraServer, String> {
    let (scheme, rest) = url.split_once(':').unwrap_or(("", url));
    match scheme {
        "stun" => {
            check_host_port_query(rest, false, url)?;
            Ok(ExtraServer {
                url: url.to_string(),
                credentials: None,
            })
        }
        "turn" | "turns" => {
            let (user_pass, hostpart) = rest.rsplit_once('@').ok_or_else(|| {
                format!(
                    "--ice-server {url:?}: a TURN server needs credentials; write \
                     {scheme}:USER:PASSWORD@HOST:PORT, or use --turn-url with --turn-secret \
                     for coturn's short-lived ones"
                )
            })?;
            let (user, pass) = user_pass
                .split_once(':')
                .filter(|(u, p)| !u.is_empty() && !p.is_empty())
                .ok_or_else(|| {
                    format!("--ice-server {scheme}:…@{hostpart}: the credentials are USER:PASSWORD")
                })?;
            let clean = format!("{scheme}:{hostpart}");
            check_host_port_query(hostpart, true, &clean)?;
            Ok(ExtraServer {
                url: clean,
                credentials: Some((user.to_string(), pass.to_string())),
            })
        }
        _ => Err(format!(
            "--ice-server {url:?} is not a STUN or TURN URL: it starts with stun:, turn: or \
             turns: (e.g. stun:stun.example.com:3478)"
        )),
    }
}

/// Check one `--turn-url`: `turn:` or `turns:`, host, port, transport, no credentials.
pub fn parse_turn_url(url: &str) -> Result<String, String> {
    let (scheme, rest) = url.split_once(':').unwrap_or(("", url));
    if scheme != "turn" && scheme != "turns" {
        return Err(format!(
            "--turn-url {url:?} is not a TURN URL: it starts with turn: or turns: \
             (e.g. turn:turn.example.com:3478?transport=udp)"
        ));
    }
    if rest.contains('@') {
        return Err(format!(
            "--turn-url {scheme}:…: no credentials in the URL; whis makes them from --turn-secret"
        ));
    }
    check_host_port_query(rest, true, url)?;
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stun_and_turn_urls_are_checked() {
        for good in [
            "stun:stun.example.com",
            "stun:stun.example.com:3478",
            "stun:192.0.2.1:19302",
            "stun:[2001:db8::1]:3478",
        ] {
            assert_eq!(parse_ice_server(good).map(|s| s.url), Ok(good.to_string()));
        }
        let t = parse_ice_server("turns:al:i:ce@turn.example.com:5349?transport=tcp")
            .expect("a TURN URL with credentials");
        assert_eq!(t.url, "turns:turn.example.com:5349?transport=tcp");
        assert_eq!(t.credentials, Some(("al".into(), "i:ce".into())));
        for (bad, says) in [
            ("http://stun.example.com", "is not a STUN or TURN URL"),
            ("stun.example.com:3478", "is not a STUN or TURN URL"),
            ("", "is not a STUN or TURN URL"),
            ("stun://stun.example.com", "not a host name"),
            ("stun:stun.example.com:0", "port must be"),
            ("stun:stun.example.com:99999", "port must be"),
            ("stun:stun.example.com/x", "not a host name"),
            ("stun:exa mple.com", "not a host name"),
            ("stun:example.com?transport=udp", "only query"),
            ("stun:[::1", "closing"),
            ("turn:turn.example.com:3478", "needs credentials"),
            ("turn::pw@turn.example.com", "USER:PASSWORD"),
            ("turn:u:p@turn.example.com?transport=sctp", "only query"),
        ] {
            let e = parse_ice_server(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(parse_turn_url("turn:127.0.0.1:3478?transport=udp").is_ok());
        assert!(parse_turn_url("stun:127.0.0.1:3478")
            .expect_err("stun")
            .contains("is not a TURN URL"));
        assert!(parse_turn_url("turn:u:p@127.0.0.1")
            .expect_err("userinfo")
            .contains("no credentials"));
    }

    #[test]
    fn turn_secret_and_url_come_together() {
        let urls = vec!["turn:127.0.0.1:3478".to_string()];
        let e = IceSettings::from_flags(None, &[], &[], Some("s".into()), false)
            .expect_err("secret without URL");
        assert!(e.contains("no --turn-url"), "{e}");
        let e =
            IceSettings::from_flags(None, &[], &urls, None, false).expect_err("URL without secret");
        assert!(e.contains("--turn-secret S or WHIS_TURN_SECRET"), "{e}");
        let e = IceSettings::from_flags(None, &[], &urls, Some(String::new()), false)
            .expect_err("empty secret");
        assert!(e.contains("empty"), "{e}");
        let e =
            IceSettings::from_flags(None, &[], &[], None, true).expect_err("relay without TURN");
        assert!(e.contains("--relay-only needs a TURN server"), "{e}");
        let ok = IceSettings::from_flags(None, &[], &urls, Some("s3cret".into()), true)
            .expect("TURN with its secret");
        assert!(ok.has_turn() && ok.relay_only);
        // The secret never shows in Debug output (config dumps, logs).
        assert!(!format!("{ok:?}").contains("s3cret"));
    }

    #[test]
    fn host_headers_become_url_hosts() {
        assert_eq!(
            host_without_port("Example.com:8080").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_without_port("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_without_port("[::1]:8080").as_deref(), Some("[::1]"));
        for bad in [
            "",
            "a b",
            "x:y",
            "[::1",
            "[zz]:80",
            "host/evil",
            "a..b",
            "h:0",
        ] {
            assert_eq!(host_without_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn join_lists_whis_stun_first_then_the_operators_servers_then_turn() {
        let settings = IceSettings::from_flags(
            Some("0.0.0.0:0".parse().expect("literal")),
            &["stun:stun.example.com:3478".into()],
            &["turn:turn.example.com:3478?transport=udp".into()],
            Some("north".into()),
            false,
        )
        .expect("valid");
        let bound = Some("0.0.0.0:40000".parse().expect("literal"));
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000) - turn::CREDENTIAL_TTL;
        let got = for_join(&settings, bound, Some("site.example:8080"), "p1", now);
        assert_eq!(
            serde_json::to_value(&got).expect("serializes"),
            serde_json::json!([
                {"urls": "stun:site.example:40000"},
                {"urls": "stun:stun.example.com:3478"},
                {"urls": "turn:turn.example.com:3478?transport=udp",
                 "username": "1700000000:p1", "credential": "qmV1Ez2SwzrylXCPMqxg9P1hY0Y="},
            ])
        );
        assert_eq!(settings.transport_policy(), "all");
        // No usable Host header: the address STUN is bound to (loopback for 0.0.0.0).
        let got = for_join(&settings, bound, Some("evil host"), "p1", now);
        assert_eq!(got[0].urls, vec!["stun:127.0.0.1:40000".to_string()]);
    }

    #[test]
    fn several_turn_urls_go_as_a_list() {
        let settings = IceSettings::from_flags(
            None,
            &[],
            &["turn:t.example:3478".into(), "turns:t.example:5349".into()],
            Some("s".into()),
            true,
        )
        .expect("valid");
        let got = serde_json::to_value(for_join(&settings, None, None, "p", SystemTime::now()))
            .expect("serializes");
        assert_eq!(
            got[0]["urls"],
            serde_json::json!(["turn:t.example:3478", "turns:t.example:5349"])
        );
        assert_eq!(settings.transport_policy(), "relay");
    }

    #[test]
    fn without_stun_or_servers_the_list_is_empty() {
        let got = for_join(
            &IceSettings::default(),
            None,
            Some("a"),
            "p",
            SystemTime::now(),
        );
        assert!(got.is_empty());
    }
}
