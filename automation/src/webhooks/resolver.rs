//! The DNS resolver deliveries dial through: the system's answer with every refused address
//! ([`super::address`]) dropped, so the check applies to the address actually connected to
//! (a name that resolves to a public address when the URL is saved and to 127.0.0.1 later
//! gains nothing). A name left with no address fails, naming what was refused.

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::address;

/// See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_loopback: bool,
}

/// A name whose every address is refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused address {address} for {name}: {reason} (webhooks deliver to public addresses only)"
)]
pub struct Refused {
    pub name: String,
    pub address: std::net::IpAddr,
    pub reason: &'static str,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut first_refusal = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match address::refused(addr.ip(), allow_loopback) {
                    None => true,
                    Some(reason) => {
                        first_refusal.get_or_insert((addr.ip(), reason));
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                if let Some((address, reason)) = first_refusal {
                    return Err(Box::new(Refused {
                        name: host,
                        address,
                        reason,
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
                return Err(format!("{host} has no address").into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}
