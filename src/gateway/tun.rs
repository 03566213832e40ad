//! The TUN's own IPv6 addressing: it keeps only our overlay address. Invariant: no IPv6
//! link-local address on the TUN (as WireGuard interfaces have none): the mesh carries no
//! link-local traffic, and without one the host sends no router solicitations or other
//! link-local chatter into the tunnel to be dropped as `no_route`.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::AddressAttribute;

use super::GatewayError;

/// Stop the kernel giving `tun` a link-local address (`addr_gen_mode` 1: none) and remove the
/// one it already has; returns how many were removed.
pub async fn drop_link_local(h: &Handle, tun: &str) -> Result<usize, GatewayError> {
    let mode = format!("/proc/sys/net/ipv6/conf/{tun}/addr_gen_mode");
    std::fs::write(&mode, "1").map_err(|source| GatewayError::Io {
        what: "setting addr_gen_mode on the TUN",
        source,
    })?;
    let idx = super::policy::ifindex(h, tun).await?;
    let mut addrs = h.address().get().set_link_index_filter(idx).execute();
    let mut doomed = Vec::new();
    while let Some(m) = addrs.try_next().await? {
        let link_local = m.attributes.iter().any(
            |a| matches!(a, AddressAttribute::Address(IpAddr::V6(v)) if v.is_unicast_link_local()),
        );
        if link_local {
            doomed.push(m);
        }
    }
    let n = doomed.len();
    for m in doomed {
        h.address().del(m).execute().await?;
    }
    Ok(n)
}
