//! The caller's address behind proxies. `X-Forwarded-For` is believed only as far as it
//! was written by hops in `TRUSTED_PROXIES`: read from the right, every trusted address
//! is a proxy we run and the first one that is not is the client. Without trusted
//! proxies (the default) the header is ignored and the peer is the client, so nobody can
//! pick their own address by sending the header.

use std::{
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
};

use poem::Request;

/// One `address/prefix` network, IPv4 or IPv6; a bare address is a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has a prefix length outside 0..={max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 peer seen through an IPv6 socket (`::ffff:a.b.c.d`) is the IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// A comma-separated list of CIDRs or addresses; empty trusts nobody.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(addr))
    }

    /// The client behind `peer` given the `X-Forwarded-For` values received, in order.
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
        for hop in hops.iter().rev() {
            // A malformed entry was not written by a proxy of ours: stop believing there.
            let Ok(addr) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = canonical(addr);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }

    /// The client of `req` (its peer when the peer is not a trusted proxy).
    pub fn client_of(&self, req: &Request) -> IpAddr {
        let peer = req
            .remote_addr()
            .as_socket_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        self.client(peer, forwarded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.200.3.4")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6");
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_through_trusted_hops() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        let untrusted_peer = ip("203.0.113.9");
        // Anyone may send the header; from an untrusted peer it is ignored.
        assert_eq!(
            trusted.client(untrusted_peer, ["1.2.3.4"].into_iter()),
            untrusted_peer
        );
        // Through the ingress (trusted): the address it appended.
        assert_eq!(
            trusted.client(ip("10.1.1.1"), ["198.51.100.7"].into_iter()),
            ip("198.51.100.7")
        );
        // A client that forged an entry before reaching the ingress gets its real one.
        assert_eq!(
            trusted.client(ip("10.1.1.1"), ["6.6.6.6, 198.51.100.7"].into_iter()),
            ip("198.51.100.7")
        );
        // Two proxies of ours in a row, across two header lines.
        assert_eq!(
            trusted.client(ip("127.0.0.1"), ["198.51.100.7", "10.2.2.2"].into_iter()),
            ip("198.51.100.7")
        );
        // Garbage stops the walk at the last believable hop.
        assert_eq!(
            trusted.client(ip("10.1.1.1"), ["198.51.100.7, not-an-ip"].into_iter()),
            ip("10.1.1.1")
        );
        // No trusted proxies: the peer, whatever the header says.
        assert_eq!(
            TrustedProxies::default().client(ip("10.1.1.1"), ["1.2.3.4"].into_iter()),
            ip("10.1.1.1")
        );
    }
}
