//! The address of the client behind a request: the peer's, unless the peer is a trusted reverse
//! proxy (`web.trusted_proxies`), in which case the `Forwarded` (RFC 7239) or `X-Forwarded-For`
//! header says who it forwarded for. The headers of anyone else are never read: a client could
//! write whatever it likes there.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The reverse proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies(networks)
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The client's address. The forwarding chain is read from the right (the hop nearest to
    /// us): trusted proxies are skipped, the first other address is the client. An entry that is
    /// not an address (`unknown`, an obfuscated name) ends the walk at the proxy that wrote it.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer.ip());
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_chain(headers).into_iter().rev() {
            let Some(addr) = hop else { return client };
            client = canonical(addr);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// IPv4 clients of a dual-stack socket arrive as `::ffff:a.b.c.d`.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses the proxies reported, leftmost (the original client) first; `None` for an
/// entry that is not an address. `Forwarded` wins when present.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, node)| parse_node(node.trim().trim_matches('"')))
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|entry| parse_node(entry.trim()))
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:5678` or a bare IPv6 address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(addr) = node.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(inside, _)| inside.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn headers_of_untrusted_peers_are_ignored() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=1.1.1.1"),
        ]);
        let ip = TrustedProxies::default().client(peer("198.51.100.2"), &h);
        assert_eq!(ip, "198.51.100.2".parse::<IpAddr>().unwrap());
        let ip = proxies(&["10.0.0.0/8"]).client(peer("198.51.100.2"), &h);
        assert_eq!(ip, "198.51.100.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client wrote a fake first entry; our proxies appended the real hops.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.5")]);
        assert_eq!(
            trusted.client(peer("127.0.0.1"), &h),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.5",
        )]);
        assert_eq!(
            trusted.client(peer("127.0.0.1"), &h),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        // Forwarded wins over X-Forwarded-For; `unknown` stops at the proxy that wrote it.
        let h = headers(&[("forwarded", "for=unknown"), ("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            trusted.client(peer("10.0.0.5"), &h),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself.
        assert_eq!(
            trusted.client(peer("10.0.0.5"), &HeaderMap::new()),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_networks() {
        let trusted = proxies(&["127.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            trusted.client(peer("::ffff:127.0.0.1"), &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }
}
