//! Whether a request comes from the gateway's own site: its Origin names
//! our Host, and the browser's `Sec-Fetch-Site` does not say another site
//! made it. This keeps other sites from opening WebSockets with our cookie,
//! from logging a browser in with a key of theirs (login CSRF: what the
//! victim then types lands in the attacker's workspace) and from logging
//! it out.

/// Scheme, lowercase host and port (explicit or the scheme's default).
fn parse_origin(origin: &str) -> Option<(&'static str, String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let (scheme, default_port): (&'static str, u16) = match scheme.to_ascii_lowercase().as_str() {
        "http" => ("http", 80),
        "https" => ("https", 443),
        _ => return None,
    };
    // An Origin is scheme://host[:port] with no path, user info or query.
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
        return None;
    }
    let (host, port) = split_host_port(rest)?;
    Some((scheme, host, port.unwrap_or(default_port)))
}

/// Splits `host[:port]`, keeping IPv6 literals in brackets whole.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{h}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// True when `origin` names the same host and port as the `host` header
/// (a missing port in `host` is the origin scheme's default).
pub fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((scheme, o_host, o_port)) = parse_origin(origin.trim()) else {
        return false;
    };
    let Some((h_host, h_port)) = split_host_port(host.trim()) else {
        return false;
    };
    let default = if scheme == "https" { 443 } else { 80 };
    o_host == h_host && o_port == h_port.unwrap_or(default)
}

/// The request headers the site check reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct SiteHeaders<'a> {
    pub sec_fetch_site: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub host: Option<&'a str>,
}

/// Why the request came from another site, or None when it did not (or the
/// client does not say: scripts send neither header). `Sec-Fetch-Site:
/// none` is the user's own doing (the address bar, a bookmark) and
/// `same-origin` is our own pages; `same-site` is refused too, since a
/// sibling subdomain is not necessarily ours.
pub fn cross_site(h: SiteHeaders<'_>) -> Option<&'static str> {
    if let Some(site) = h.sec_fetch_site {
        let site = site.trim();
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Some("the browser says another site sent it (Sec-Fetch-Site)");
        }
    }
    match (h.origin, h.host) {
        (None, _) => None,
        (Some(o), Some(host)) if origin_matches_host(o, host) => None,
        (Some(_), _) => Some("its Origin is not this site"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_site_matches() {
        assert!(origin_matches_host(
            "http://127.0.0.1:8787",
            "127.0.0.1:8787"
        ));
        assert!(origin_matches_host(
            "http://LocalHost:8787",
            "localhost:8787"
        ));
        assert!(origin_matches_host(
            "https://dispatch.example",
            "dispatch.example"
        ));
        assert!(origin_matches_host(
            "https://dispatch.example",
            "dispatch.example:443"
        ));
        assert!(origin_matches_host("http://[::1]:9", "[::1]:9"));
    }

    #[test]
    fn other_sites_do_not() {
        for (o, h) in [
            ("http://evil.example:8787", "127.0.0.1:8787"),
            ("http://127.0.0.1:8788", "127.0.0.1:8787"),
            ("https://127.0.0.1", "127.0.0.1:80"),
            ("null", "127.0.0.1:8787"),
            ("", "127.0.0.1:8787"),
            ("file://x", "x"),
            ("http://127.0.0.1:8787/path", "127.0.0.1:8787"),
            ("http://user@127.0.0.1:8787", "127.0.0.1:8787"),
            ("http://127.0.0.1:8787", ""),
            ("http://127.0.0.1:99999", "127.0.0.1:99999"),
            ("http://127.0.0.1.evil.example:8787", "127.0.0.1:8787"),
        ] {
            assert!(!origin_matches_host(o, h), "{o} vs {h}");
        }
    }

    #[test]
    fn cross_site_requests_are_named() {
        let h = |site, origin| SiteHeaders {
            sec_fetch_site: site,
            origin,
            host: Some("127.0.0.1:8787"),
        };
        let ours = Some("http://127.0.0.1:8787");
        for ok in [
            h(None, None),
            h(Some("none"), None),
            h(Some("same-origin"), ours),
            h(Some(" Same-Origin "), None),
            h(None, ours),
        ] {
            assert_eq!(cross_site(ok), None, "{ok:?}");
        }
        for bad in [
            h(Some("cross-site"), None),
            h(Some("same-site"), None),
            h(Some("bogus"), None),
            h(Some("none"), Some("http://evil.example")),
            h(None, Some("null")),
            h(Some("same-origin"), Some("http://127.0.0.1:9999")),
        ] {
            assert!(cross_site(bad).is_some(), "{bad:?}");
        }
        let no_host = SiteHeaders {
            origin: ours,
            ..SiteHeaders::default()
        };
        assert!(cross_site(no_host).is_some());
    }
}
