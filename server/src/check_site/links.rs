//! What a page asks the browser to load, read from its HTML and CSS the way
//! a browser tokenizes them (html5gum): the subresources (pictures, media,
//! styles, scripts, fonts, backgrounds) and the links to other pages.

use html5gum::{DefaultEmitter, Token, Tokenizer};
use url::Url;

/// One subresource of a page, resolved against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub url: Url,
    /// Where the page names it: `img`, `link stylesheet`, `css url()`…
    pub how: String,
}

/// Everything a page refers to.
#[derive(Debug, Default)]
pub struct PageLinks {
    pub resources: Vec<Found>,
    /// Stylesheets (also in `resources`): their own `url()`s count too.
    pub stylesheets: Vec<Url>,
    /// `<a href>` targets: the next pages to read.
    pub pages: Vec<Url>,
    /// The page already carries Whis's script (`/whis/client.js`).
    pub has_whis: bool,
}

/// `<link rel>` values whose target the browser loads as a subresource.
const LOADED_RELS: &[&str] = &[
    "stylesheet",
    "preload",
    "prefetch",
    "icon",
    "apple-touch-icon",
    "modulepreload",
    "manifest",
];

/// Read a page's HTML; relative URLs resolve against `page` (or `<base href>`).
pub fn from_html(page: &Url, html: &str) -> PageLinks {
    let mut out = PageLinks::default();
    let mut base = page.clone();
    let mut emitter = DefaultEmitter::default();
    // <style>, <script> and <textarea> contents are text, not tags.
    emitter.naively_switch_states(true);
    let mut in_style = false;
    for token in Tokenizer::new_with_emitter(html, emitter).flatten() {
        match token {
            Token::StartTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name).to_ascii_lowercase();
                let attr = |n: &str| {
                    tag.attributes
                        .get(n.as_bytes())
                        .map(|v| String::from_utf8_lossy(v).trim().to_string())
                        .filter(|v| !v.is_empty())
                };
                in_style = name == "style";
                if name == "base" {
                    if let Some(b) = attr("href").and_then(|h| page.join(&h).ok()) {
                        base = b;
                    }
                    continue;
                }
                let add = |out: &mut PageLinks, value: Option<String>, how: String| {
                    if let Some(u) = value.and_then(|v| resolve(&base, &v)) {
                        out.resources.push(Found { url: u, how });
                    }
                };
                match name.as_str() {
                    "img" | "source" | "video" | "audio" | "track" | "embed" | "input"
                    | "iframe" => {
                        if name != "iframe" {
                            add(&mut out, attr("src"), name.clone());
                        }
                        add(
                            &mut out,
                            attr("data-whis-src"),
                            format!("{name} data-whis-src"),
                        );
                        add(&mut out, attr("poster"), format!("{name} poster"));
                        for set in [attr("srcset"), attr("data-whis-srcset")]
                            .into_iter()
                            .flatten()
                        {
                            for candidate in srcset(&set) {
                                add(&mut out, Some(candidate), format!("{name} srcset"));
                            }
                        }
                    }
                    "script" => {
                        if let Some(src) = attr("src") {
                            if src.contains("/whis/client.js") {
                                out.has_whis = true;
                            } else {
                                add(&mut out, Some(src), "script".into());
                            }
                        }
                    }
                    "link" => {
                        let rel = attr("rel").unwrap_or_default().to_ascii_lowercase();
                        let rels: Vec<&str> = rel.split_ascii_whitespace().collect();
                        if let Some(r) = rels.iter().find(|r| LOADED_RELS.contains(r)) {
                            let href = attr("href").or_else(|| attr("data-whis-src"));
                            if let Some(u) = href.and_then(|h| resolve(&base, &h)) {
                                if *r == "stylesheet" {
                                    out.stylesheets.push(u.clone());
                                }
                                out.resources.push(Found {
                                    url: u,
                                    how: format!("link {r}"),
                                });
                            }
                        }
                    }
                    "a" | "area" => {
                        if let Some(u) = attr("href").and_then(|h| resolve(&base, &h)) {
                            out.pages.push(u);
                        }
                    }
                    _ => {}
                }
                if let Some(style) = attr("style") {
                    for u in from_css(&style) {
                        add(&mut out, Some(u), format!("{name} style url()"));
                    }
                }
            }
            Token::String(text) if in_style => {
                for u in from_css(&String::from_utf8_lossy(&text)) {
                    if let Some(url) = resolve(&base, &u) {
                        out.resources.push(Found {
                            url,
                            how: "style url()".into(),
                        });
                    }
                }
            }
            Token::EndTag(_) => in_style = false,
            _ => {}
        }
    }
    out
}

/// The URLs a stylesheet names: `url(...)` (fonts, backgrounds, images)
/// and `@import "..."`, as written (resolve them against the sheet).
pub fn from_css(css: &str) -> Vec<String> {
    let mut out = Vec::new();
    let css = strip_comments(css);
    let lower = css.to_ascii_lowercase();
    let mut at = 0;
    while let Some(i) = lower[at..].find("url(") {
        let start = at + i + 4;
        let Some(len) = css[start..].find(')') else {
            break;
        };
        let inner = unquote(&css[start..start + len]);
        if !inner.is_empty() && !inner.starts_with("data:") && !inner.starts_with('#') {
            out.push(inner.to_string());
        }
        at = start + len;
    }
    let mut at = 0;
    while let Some(i) = lower[at..].find("@import") {
        let rest = css[at + i + 7..].trim_start();
        at += i + 7;
        if let Some(q @ ('"' | '\'')) = rest.chars().next() {
            if let Some(end) = rest[1..].find(q) {
                out.push(rest[1..1 + end].to_string());
            }
        }
    }
    out
}

fn strip_comments(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find("*/") {
            Some(j) => rest = &rest[i + 2 + j + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(s)
        .trim()
}

/// The URLs of a `srcset` (each candidate's first word).
fn srcset(set: &str) -> Vec<String> {
    set.split(',')
        .filter_map(|c| c.split_ascii_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `value` resolved against `base`, without its fragment; only http(s).
pub fn resolve(base: &Url, value: &str) -> Option<Url> {
    let mut u = base.join(value).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    u.set_fragment(None);
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Url {
        Url::parse("https://site.test/blog/post.html").expect("a URL")
    }

    #[test]
    fn tags_styles_and_links_are_read_as_a_browser_would() {
        let html = r#"<!doctype html><html><head>
            <script src="/whis/client.js" defer></script>
            <link rel="stylesheet" href="../css/site.css">
            <link rel="preload icon" href="/fav.png">
            <link rel="alternate" href="/feed.xml">
            <script src="app.js"></script>
            <style>body { background: url('/img/bg.jpg') } /* url(/commented.png) */</style>
            </head><body>
            <img src="a.jpg#x" srcset="a-2x.jpg 2x, /img/a-3x.jpg 3x">
            <img data-whis-src="/img/big.jpg" alt="<img src=fake.jpg>">
            <video poster="/v.jpg"><source src="/v.webm"></video>
            <div style="background-image:url(&quot;/img/tile.png&quot;)"></div>
            <script>var s = '<img src="/not-a-tag.jpg">';</script>
            <a href="/about.html#team">About</a> <a href="mailto:x@y">mail</a>
            <a href="https://other.test/">other</a>
            </body></html>"#;
        let links = from_html(&page(), html);
        assert!(links.has_whis);
        let urls: Vec<(String, &str)> = links
            .resources
            .iter()
            .map(|f| (f.url.path().to_string(), f.how.as_str()))
            .collect();
        for (path, how) in [
            ("/css/site.css", "link stylesheet"),
            ("/fav.png", "link preload"),
            ("/blog/app.js", "script"),
            ("/img/bg.jpg", "style url()"),
            ("/blog/a.jpg", "img"),
            ("/blog/a-2x.jpg", "img srcset"),
            ("/img/a-3x.jpg", "img srcset"),
            ("/img/big.jpg", "img data-whis-src"),
            ("/v.jpg", "video poster"),
            ("/v.webm", "source"),
            ("/img/tile.png", "div style url()"),
        ] {
            assert!(
                urls.contains(&(path.to_string(), how)),
                "{path} as {how} in {urls:?}"
            );
        }
        for absent in [
            "/feed.xml",
            "/commented.png",
            "/not-a-tag.jpg",
            "/blog/fake.jpg",
        ] {
            assert!(
                !urls.iter().any(|(p, _)| p == absent),
                "{absent} in {urls:?}"
            );
        }
        assert_eq!(links.stylesheets.len(), 1);
        let pages: Vec<String> = links.pages.iter().map(Url::to_string).collect();
        assert_eq!(
            pages,
            ["https://site.test/about.html", "https://other.test/"]
        );
    }

    #[test]
    fn stylesheets_name_fonts_backgrounds_and_imports() {
        let css = r#"@import "base.css"; @import url(print.css);
            @font-face { src: url("/fonts/a.woff2") format("woff2"), url(data:font/woff;base64,AAA) }
            .x { background: URL( '../img/x.png' ) } /* url(no.png) */ .y { mask: url(#m) }"#;
        assert_eq!(
            from_css(css),
            ["print.css", "/fonts/a.woff2", "../img/x.png", "base.css"]
        );
        assert!(from_css("a { background: url(unclosed").is_empty());
    }
}
