//! `whis check-site URL`: what Whis would share on a site, page by page, and
//! why not the rest, before the operator adds the line.
//!
//! It reads the start page and the same-origin pages it links to (up to
//! `--pages`), finds what each page loads (HTML, then its stylesheets'
//! `url()`s), fetches each resource once as `whis serve --origin` would to
//! hash it (a plain `GET`, no cookies, no `Accept-Encoding`) and judges it by
//! the rules the service worker and the manifest service apply: same origin,
//! no query string, `200`, not `private`/`no-store`, no `Set-Cookie`, not
//! `Vary: Cookie`, not compressed by the origin, and within the sizes.

mod links;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderMap};
use futures_util::StreamExt;
use serde::Serialize;
use url::Url;
use whis_core::manifest::ineligible_reason;

use crate::config::CheckSiteArgs;
use crate::manifests::MAX_RESOURCE;

pub use links::{from_css, from_html, Found, PageLinks};

/// Most resources checked in one run (each is fetched once).
const MAX_RESOURCES: usize = 2000;
/// Most bytes of a page or stylesheet read to find what it refers to.
const MAX_TEXT: usize = 8 * 1024 * 1024;

/// The whole run, as printed (text) or serialised (`--json`).
#[derive(Debug, Serialize)]
pub struct Report {
    pub site: String,
    pub min_size: u64,
    pub pages: Vec<PageReport>,
    /// Shareable bytes and all bytes, each resource counted once.
    pub shareable_bytes: u64,
    pub total_bytes: u64,
    pub resources_checked: usize,
    /// Set when `MAX_RESOURCES` stopped the run early.
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct PageReport {
    pub url: String,
    pub status: Option<u16>,
    /// Why this page was not read for resources (not HTML, an error, a redirect).
    pub note: Option<String>,
    /// The page already has `<script src="/whis/client.js">`.
    pub has_whis: bool,
    pub resources: Vec<Verdict>,
    pub shareable_bytes: u64,
    pub total_bytes: u64,
}

/// One resource as a page uses it.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub url: String,
    /// How the page names it (`img`, `link stylesheet`, `url() in /css/a.css`).
    pub how: String,
    pub shared: bool,
    /// Why not (`None` when shared).
    pub reason: Option<String>,
    pub size: Option<u64>,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
}

/// What one fetch of a resource found (shared by every page that uses it).
#[derive(Debug, Clone)]
struct Checked {
    shared: bool,
    reason: Option<String>,
    size: Option<u64>,
    content_type: Option<String>,
    cache_control: Option<String>,
    /// A stylesheet's text, to read its `url()`s.
    css: Option<String>,
}

/// The rules, on what a fetch saw. `Ok(())`: Whis would share it.
pub fn judge(status: u16, headers: &HeaderMap, size: u64, min_size: u64) -> Result<(), String> {
    if status != 200 {
        return Err(format!(
            "the origin answered {status}; only 200 answers are shared"
        ));
    }
    let all = |name: header::HeaderName| -> Option<String> {
        let lines: Vec<&str> = headers
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!lines.is_empty()).then(|| lines.join(", "))
    };
    if let Some(reason) = ineligible_reason(
        all(header::CACHE_CONTROL).as_deref(),
        headers.contains_key(header::SET_COOKIE),
        all(header::VARY).as_deref(),
    ) {
        return Err(reason.to_string());
    }
    if let Some(enc) = all(header::CONTENT_ENCODING).filter(|e| e != "identity") {
        return Err(format!(
            "the origin compresses it on its own (Content-Encoding: {enc}); Whis shares the bytes as stored"
        ));
    }
    if size < min_size {
        return Err(format!(
            "under the {} worth sharing (--min-size)",
            human(min_size)
        ));
    }
    if size > MAX_RESOURCE {
        return Err(format!(
            "over the largest shared resource ({})",
            human(MAX_RESOURCE)
        ));
    }
    Ok(())
}

/// Why the service worker would not even ask Whis, judged by the URL alone.
pub fn url_rule(url: &Url, site: &Url) -> Option<String> {
    if url.origin() != site.origin() {
        return Some(format!(
            "on another origin ({}): the service worker handles this site's own requests only",
            url.origin().ascii_serialization()
        ));
    }
    if url.query().is_some() {
        return Some("has a query string: such requests go to the network untouched".into());
    }
    None
}

/// Whis's own files, which a page may load but are never listed.
fn is_whis_own(url: &Url) -> bool {
    url.path() == "/whis-sw.js" || url.path().starts_with("/whis/")
}

/// Read the site and judge what its pages load.
pub async fn check(args: &CheckSiteArgs) -> Result<Report, String> {
    let start = Url::parse(&args.url).map_err(|e| format!("{}: {e}", args.url))?;
    if !matches!(start.scheme(), "http" | "https") || start.host().is_none() {
        return Err(format!("{} is not an http:// or https:// URL", args.url));
    }
    let client = client(args.ca_cert.as_deref())?;
    let mut queue = VecDeque::from([start.clone()]);
    let mut seen_pages: HashSet<Url> = HashSet::from([start.clone()]);
    let mut checked: HashMap<Url, Checked> = HashMap::new();
    let mut report = Report {
        site: start.origin().ascii_serialization(),
        min_size: args.min_size,
        pages: Vec::new(),
        shareable_bytes: 0,
        total_bytes: 0,
        resources_checked: 0,
        truncated: false,
    };
    while let Some(page) = queue.pop_front() {
        if report.pages.len() >= args.pages as usize {
            break;
        }
        let (mut page_report, found) = read_page(&client, &page).await;
        let Some(found) = found else {
            report.pages.push(page_report);
            continue;
        };
        for next in &found.pages {
            if next.origin() == start.origin()
                && !is_whis_own(next)
                && seen_pages.insert(next.clone())
            {
                queue.push_back(next.clone());
            }
        }
        // What the page names, then what its same-origin stylesheets name.
        let mut uses: Vec<Found> = found.resources.clone();
        for sheet in &found.stylesheets {
            if url_rule(sheet, &start).is_some() {
                continue;
            }
            let c = fetch_once(&client, &mut checked, sheet, args.min_size, true).await;
            if let Some(css) = &c.css {
                for u in from_css(css) {
                    if let Some(url) = links::resolve(sheet, &u) {
                        uses.push(Found {
                            url,
                            how: format!("url() in {}", sheet.path()),
                        });
                    }
                }
            }
        }
        let mut listed: HashSet<Url> = HashSet::new();
        for f in uses {
            if is_whis_own(&f.url) || !listed.insert(f.url.clone()) {
                continue;
            }
            let verdict = match url_rule(&f.url, &start) {
                Some(reason) => Verdict {
                    url: f.url.to_string(),
                    how: f.how,
                    shared: false,
                    reason: Some(reason),
                    size: None,
                    content_type: None,
                    cache_control: None,
                },
                None => {
                    if checked.len() >= MAX_RESOURCES && !checked.contains_key(&f.url) {
                        report.truncated = true;
                        continue;
                    }
                    let c = fetch_once(&client, &mut checked, &f.url, args.min_size, false).await;
                    Verdict {
                        url: f.url.to_string(),
                        how: f.how,
                        shared: c.shared,
                        reason: c.reason,
                        size: c.size,
                        content_type: c.content_type,
                        cache_control: c.cache_control,
                    }
                }
            };
            let size = verdict.size.unwrap_or(0);
            page_report.total_bytes += size;
            if verdict.shared {
                page_report.shareable_bytes += size;
            }
            page_report.resources.push(verdict);
        }
        report.pages.push(page_report);
    }
    report.resources_checked = checked.len();
    for c in checked.values() {
        report.total_bytes += c.size.unwrap_or(0);
        if c.shared {
            report.shareable_bytes += c.size.unwrap_or(0);
        }
    }
    Ok(report)
}

/// Fetch and read a page; `None` when it is not an HTML page to read.
async fn read_page(client: &awc::Client, page: &Url) -> (PageReport, Option<PageLinks>) {
    let mut report = PageReport {
        url: page.to_string(),
        status: None,
        note: None,
        has_whis: false,
        resources: Vec::new(),
        shareable_bytes: 0,
        total_bytes: 0,
    };
    let fetched = match get(client, page, MAX_TEXT as u64, true).await {
        Ok(f) => f,
        Err(e) => {
            report.note = Some(format!("could not fetch: {e}"));
            return (report, None);
        }
    };
    report.status = Some(fetched.status);
    if (300..400).contains(&fetched.status) {
        let to = fetched
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| links::resolve(page, l));
        report.note = Some(match &to {
            Some(u) => format!("redirects to {u}"),
            None => "a redirect without a usable Location".into(),
        });
        // Follow it as a link of this "page".
        return (
            report,
            to.map(|u| PageLinks {
                pages: vec![u],
                ..PageLinks::default()
            }),
        );
    }
    if fetched.status != 200 {
        report.note = Some(format!("answered {}", fetched.status));
        return (report, None);
    }
    let is_html = fetched
        .content_type()
        .is_some_and(|t| t.to_ascii_lowercase().contains("html"));
    if !is_html {
        report.note = Some(format!(
            "not an HTML page ({})",
            fetched.content_type().unwrap_or("no Content-Type")
        ));
        return (report, None);
    }
    let html = String::from_utf8_lossy(&fetched.body);
    let found = from_html(page, &html);
    report.has_whis = found.has_whis;
    (report, Some(found))
}

async fn fetch_once(
    client: &awc::Client,
    checked: &mut HashMap<Url, Checked>,
    url: &Url,
    min_size: u64,
    keep_css: bool,
) -> Checked {
    if let Some(c) = checked.get(url) {
        return c.clone();
    }
    let c = match get(client, url, MAX_RESOURCE.saturating_add(1), keep_css).await {
        Err(e) => Checked {
            shared: false,
            reason: Some(format!("could not fetch: {e}")),
            size: None,
            content_type: None,
            cache_control: None,
            css: None,
        },
        Ok(f) => {
            let verdict = judge(f.status, &f.headers, f.size, min_size);
            let is_css = f
                .content_type()
                .is_some_and(|t| t.to_ascii_lowercase().contains("css"));
            Checked {
                shared: verdict.is_ok(),
                reason: verdict.err(),
                size: (f.status == 200).then_some(f.size),
                content_type: f.content_type().map(str::to_string),
                cache_control: f
                    .headers
                    .get(header::CACHE_CONTROL)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                css: (keep_css && is_css && f.status == 200)
                    .then(|| String::from_utf8_lossy(&f.body).into_owned()),
            }
        }
    };
    checked.insert(url.clone(), c.clone());
    c
}

struct Fetched {
    status: u16,
    headers: HeaderMap,
    /// Body bytes read (all of them, up to the limit given).
    size: u64,
    /// The body, when asked to keep it (at most `MAX_TEXT`).
    body: Vec<u8>,
}

impl Fetched {
    fn content_type(&self) -> Option<&str> {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }
}

/// GET `url` and read its body (counting it; keeping at most `MAX_TEXT`
/// bytes when `keep`), stopping after `limit` bytes.
async fn get(client: &awc::Client, url: &Url, limit: u64, keep: bool) -> Result<Fetched, String> {
    let mut res = client
        .get(url.as_str())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let mut size = 0u64;
    let mut body = Vec::new();
    while let Some(chunk) = res.next().await {
        let chunk = chunk.map_err(|e| format!("reading the body: {e}"))?;
        size += chunk.len() as u64;
        if keep && body.len() + chunk.len() <= MAX_TEXT {
            body.extend_from_slice(&chunk);
        }
        if size >= limit {
            break;
        }
    }
    Ok(Fetched {
        status,
        headers,
        size,
        body,
    })
}

/// An HTTP client that checks certificates against the system's authorities
/// (plus `--ca-cert`), follows no redirects and sends no cookies.
fn client(ca_cert: Option<&Path>) -> Result<awc::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_cert {
        let certs = crate::tls::read_certificates(path, "--ca-cert")?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .disable_redirects()
        .timeout(Duration::from_secs(30))
        .add_default_header((
            header::USER_AGENT,
            concat!("whis-check-site/", env!("CARGO_PKG_VERSION")),
        ))
        .finish())
}

/// `1.2 MB`, `340 KB`, `512 B` (decimal units, as browsers' tools show).
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.0} KB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

/// The report as an operator reads it.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Whis check of {} ({} page(s); resources of at least {} are worth sharing)\n",
        r.site,
        r.pages.len(),
        human(r.min_size)
    );
    for p in &r.pages {
        let status = p
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "{}  [{status}]", p.url);
        if let Some(note) = &p.note {
            let _ = writeln!(out, "  {note}\n");
            continue;
        }
        let _ = writeln!(
            out,
            "  the page itself: a navigation, always from the origin; Whis line: {}",
            if p.has_whis {
                "present"
            } else {
                "not yet added"
            }
        );
        // Shared first, then the rest grouped by reason.
        let mut by_reason: BTreeMap<&str, Vec<&Verdict>> = BTreeMap::new();
        for v in &p.resources {
            if v.shared {
                resource_line(&mut out, "shared", v, &r.site);
            } else {
                by_reason
                    .entry(v.reason.as_deref().unwrap_or(""))
                    .or_default()
                    .push(v);
            }
        }
        for (reason, vs) in by_reason {
            for v in vs {
                resource_line(&mut out, "not shared", v, &r.site);
            }
            let _ = writeln!(out, "              why: {reason}");
        }
        let _ = writeln!(
            out,
            "  this page: {} of {} shareable{}\n",
            human(p.shareable_bytes),
            human(p.total_bytes),
            percent(p.shareable_bytes, p.total_bytes)
        );
    }
    let _ = writeln!(
        out,
        "Whole site: {} resource(s), {} of {} shareable{}{}",
        r.resources_checked,
        human(r.shareable_bytes),
        human(r.total_bytes),
        percent(r.shareable_bytes, r.total_bytes),
        if r.truncated {
            format!(" (stopped after {MAX_RESOURCES} resources)")
        } else {
            String::new()
        }
    );
    if r.pages.iter().any(|p| p.note.is_none() && !p.has_whis) {
        let _ = writeln!(
            out,
            "To share them, add first in <head>: <script src=\"/whis/client.js\" defer></script>"
        );
    }
    out
}

/// `  shared        1.2 MB  /img/a.jpg  (img)`
fn resource_line(out: &mut String, label: &str, v: &Verdict, site: &str) {
    use std::fmt::Write as _;
    let size = v.size.map(human).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "  {label:<10}  {size:>9}  {}  ({})",
        short(&v.url, site),
        v.how
    );
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        String::new()
    } else {
        format!(" ({:.0} %)", part as f64 * 100.0 / whole as f64)
    }
}

/// Same-origin URLs by their path, others in full.
fn short(url: &str, site: &str) -> String {
    url.strip_prefix(site)
        .filter(|p| p.starts_with('/'))
        .unwrap_or(url)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn the_rules_say_why_not() {
        let min = 16 * 1024;
        let big = 100_000;
        assert_eq!(
            judge(
                200,
                &headers(&[("cache-control", "public, max-age=60")]),
                big,
                min
            ),
            Ok(())
        );
        for (status, h, size, expect) in [
            (404, vec![], big, "answered 404"),
            (
                200,
                vec![("cache-control", "public"), ("cache-control", "private")],
                big,
                "private",
            ),
            (200, vec![("set-cookie", "a=b")], big, "cookie"),
            (
                200,
                vec![("vary", "Accept-Encoding"), ("vary", "Cookie")],
                big,
                "cookie",
            ),
            (200, vec![("content-encoding", "gzip")], big, "compresses"),
            (200, vec![], 1000, "under the 16 KB"),
        ] {
            let err = judge(status, &headers(&h), size, min).expect_err("refused");
            assert!(err.contains(expect), "{h:?}: {err}");
        }
    }

    #[test]
    fn other_origins_and_queries_are_left_to_the_network() {
        let site = Url::parse("https://site.test/").expect("url");
        let ok = Url::parse("https://site.test/img/a.jpg").expect("url");
        assert_eq!(url_rule(&ok, &site), None);
        for bad in [
            "https://cdn.test/a.jpg",
            "http://site.test/a.jpg",
            "https://site.test:444/a.jpg",
            "https://site.test/a.jpg?v=2",
        ] {
            let u = Url::parse(bad).expect("url");
            assert!(url_rule(&u, &site).is_some(), "{bad}");
        }
        assert_eq!(human(999), "999 B");
        assert_eq!(human(16_384), "16 KB");
        assert_eq!(human(2_500_000), "2.5 MB");
    }
}
