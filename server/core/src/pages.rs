//! What the pages of a site use, and where their visitors go next.
//!
//! Whis learns both from traffic it already sees: each manifest request names
//! the page it was made for (so a page's shareable resources are known once
//! anybody has visited it), and each page view says which page it came from.
//! [`PageGraph::plan`] turns that into the prefetch plan for a page: of the
//! pages it links to, those visitors opened next (most opened first, then in
//! the page's own order), each with the resources it uses. The agent then
//! fetches those from peers while the page is open, so the next page finds
//! its bytes in the store (see `sw/lib/seeder.js`).
//!
//! Bounded: pages (least recently used out first), resources per page, next
//! pages per page, links per plan. Pure state; the server holds it under a lock.

use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct PagesConfig {
    /// Pages remembered; the least recently used goes first.
    pub max_pages: usize,
    /// Resources remembered per page (the first seen are kept).
    pub max_resources_per_page: usize,
    /// Next pages counted per page (the least opened goes first).
    pub max_next_per_page: usize,
    /// Pages in one plan.
    pub max_plan_pages: usize,
}

impl Default for PagesConfig {
    fn default() -> Self {
        PagesConfig {
            max_pages: 2000,
            max_resources_per_page: 64,
            max_next_per_page: 32,
            max_plan_pages: 4,
        }
    }
}

#[derive(Debug, Default)]
struct Page {
    /// Resource paths in the order first seen.
    resources: Vec<String>,
    /// Next page → times visitors opened it from here.
    next: HashMap<String, u64>,
    used: u64,
}

/// A page of a plan: its path, how often visitors went there from the
/// planned page, and the resources it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub path: String,
    pub visits: u64,
    pub resources: Vec<String>,
}

#[derive(Debug, Default)]
pub struct PageGraph {
    cfg: PagesConfig,
    pages: HashMap<String, Page>,
    clock: u64,
}

/// One name per page: `/dir/index.html` is the page `/dir/`.
pub fn page_key(path: &str) -> &str {
    match path.strip_suffix("index.html") {
        Some(dir) if dir.ends_with('/') => dir,
        _ => path,
    }
}

impl PageGraph {
    pub fn new(cfg: PagesConfig) -> Self {
        PageGraph {
            cfg,
            pages: HashMap::new(),
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    fn page(&mut self, path: &str) -> &mut Page {
        self.clock += 1;
        let key = page_key(path);
        if !self.pages.contains_key(key) && self.pages.len() >= self.cfg.max_pages {
            if let Some(oldest) = self
                .pages
                .iter()
                .min_by_key(|(_, p)| p.used)
                .map(|(k, _)| k.clone())
            {
                self.pages.remove(&oldest);
            }
        }
        let clock = self.clock;
        let page = self.pages.entry(key.to_string()).or_default();
        page.used = clock;
        page
    }

    /// `page` uses the shareable resource at `resource` (a manifest was asked for it).
    pub fn used(&mut self, page: &str, resource: &str) {
        let max = self.cfg.max_resources_per_page;
        let p = self.page(page);
        if p.resources.len() < max && !p.resources.iter().any(|r| r == resource) {
            p.resources.push(resource.to_string());
        }
    }

    /// A visitor opened `to` from `from`.
    pub fn navigated(&mut self, from: &str, to: &str) {
        let to = page_key(to).to_string();
        if page_key(from) == to {
            return;
        }
        let max = self.cfg.max_next_per_page;
        let p = self.page(from);
        if !p.next.contains_key(&to) && p.next.len() >= max {
            if let Some(least) = p
                .next
                .iter()
                .min_by_key(|(k, n)| (**n, (*k).clone()))
                .map(|(k, _)| k.clone())
            {
                p.next.remove(&least);
            }
        }
        *p.next.entry(to).or_insert(0) += 1;
    }

    /// The pages of `links` worth prefetching on `page`: those whose
    /// resources are known, most opened from `page` first, then in link order.
    pub fn plan(&self, page: &str, links: &[String]) -> Vec<Planned> {
        let here = self.pages.get(page_key(page));
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<(usize, Planned)> = links
            .iter()
            .enumerate()
            .filter_map(|(order, link)| {
                let key = page_key(link);
                if key == page_key(page) || !seen.insert(key) {
                    return None;
                }
                let target = self.pages.get(key)?;
                if target.resources.is_empty() {
                    return None;
                }
                let visits = here.and_then(|h| h.next.get(key)).copied().unwrap_or(0);
                Some((
                    order,
                    Planned {
                        path: key.to_string(),
                        visits,
                        resources: target.resources.clone(),
                    },
                ))
            })
            .collect();
        out.sort_by(|a, b| b.1.visits.cmp(&a.1.visits).then(a.0.cmp(&b.0)));
        out.into_iter()
            .take(self.cfg.max_plan_pages)
            .map(|(_, p)| p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_plan_ranks_the_pages_visitors_opened_next_then_keeps_link_order() {
        let mut g = PageGraph::new(PagesConfig::default());
        for (page, res) in [
            ("/a.html", "/img/a.jpg"),
            ("/b.html", "/img/b.jpg"),
            ("/c.html", "/img/c.jpg"),
            ("/c.html", "/css/site.css"),
        ] {
            g.used(page, res);
        }
        g.navigated("/", "/c.html");
        g.navigated("/", "/c.html");
        g.navigated("/", "/b.html");
        let plan = g.plan(
            "/",
            &links(&["/a.html", "/b.html", "/c.html", "/unknown.html"]),
        );
        let order: Vec<(&str, u64)> = plan.iter().map(|p| (p.path.as_str(), p.visits)).collect();
        assert_eq!(order, [("/c.html", 2), ("/b.html", 1), ("/a.html", 0)]);
        assert_eq!(plan[0].resources, ["/img/c.jpg", "/css/site.css"]);
    }

    #[test]
    fn index_html_and_its_directory_are_one_page() {
        let mut g = PageGraph::new(PagesConfig::default());
        g.used("/index.html", "/img/hero.jpg");
        g.navigated("/about.html", "/index.html");
        let plan = g.plan("/about.html", &links(&["/", "/index.html"]));
        assert_eq!(plan.len(), 1, "one page, listed once");
        assert_eq!(plan[0].path, "/");
        assert_eq!(plan[0].visits, 1);
        assert!(
            g.plan("/", &links(&["/index.html"])).is_empty(),
            "never the page itself"
        );
    }

    #[test]
    fn pages_are_bounded_and_the_least_recently_used_goes_first() {
        let mut g = PageGraph::new(PagesConfig {
            max_pages: 3,
            max_resources_per_page: 2,
            ..PagesConfig::default()
        });
        g.used("/1", "/r1");
        g.used("/1", "/r2");
        g.used("/1", "/r3");
        assert_eq!(g.plan("/x", &links(&["/1"]))[0].resources, ["/r1", "/r2"]);
        g.used("/2", "/r");
        g.used("/3", "/r");
        g.used("/1", "/r1"); // /1 is used again: /2 is now the oldest
        g.used("/4", "/r");
        assert_eq!(g.len(), 3);
        assert!(g.plan("/x", &links(&["/2"])).is_empty(), "/2 was forgotten");
        assert_eq!(g.plan("/x", &links(&["/1", "/3", "/4"])).len(), 3);
    }

    #[test]
    fn next_pages_and_plans_are_bounded() {
        let mut g = PageGraph::new(PagesConfig {
            max_next_per_page: 2,
            max_plan_pages: 2,
            ..PagesConfig::default()
        });
        for page in ["/a", "/b", "/c", "/d"] {
            g.used(page, "/r");
        }
        for to in ["/a", "/b", "/b", "/c"] {
            g.navigated("/1", to);
        }
        let next = &g.pages["/1"].next;
        assert_eq!(next.len(), 2);
        assert!(
            !next.contains_key("/a"),
            "the least opened next page made room"
        );
        let plan = g.plan("/1", &links(&["/a", "/b", "/c", "/d"]));
        let order: Vec<&str> = plan.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(order, ["/b", "/c"], "two pages at most, most opened first");
    }
}
