//! Who owns the client end of a loopback TCP connection.
//!
//! Plain TCP is served on loopback only, and a caller there is identified by the uid that
//! owns its socket, as a unix-socket caller is by SO_PEERCRED. The kernel answers that
//! question for one socket through `NETLINK_SOCK_DIAG` (an exact lookup by address and port,
//! a few microseconds); `/proc/net/tcp` answers it too, but reading that file walks the
//! kernel's whole TCP hash table, milliseconds on a machine with a lot of memory, so it is
//! only the fallback for kernels without socket diagnostics. Either way it is asked once per
//! connection ([`crate::access::Peer`] keeps the answer).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink, recv, send, socket_with,
    sockopt,
};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
/// `INET_DIAG_NOCOOKIE`: match the socket by its addresses, not by a cookie.
const NO_COOKIE: u32 = u32::MAX;
/// `struct nlmsghdr`.
const HEADER: usize = 16;
/// `struct inet_diag_req_v2`.
const REQUEST: usize = 56;
/// `struct inet_diag_msg`: `idiag_uid` is at offset 64.
const MESSAGE: usize = 72;
const UID_AT: usize = 64;

/// Why the kernel could not be asked (the caller then falls back to `/proc/net/tcp`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiagError {
    #[error("netlink: {0}")]
    Os(#[from] rustix::io::Errno),
    #[error("the kernel answered error {0}")]
    Kernel(i32),
    #[error("unexpected netlink answer ({0} bytes, type {1})")]
    Answer(usize, u16),
}

/// The uid and primary gid owning the client end of a connection from `remote` to our
/// `local`, or `None` when the client is not on loopback or its socket is gone.
pub(crate) fn owner(remote: SocketAddr, local: SocketAddr) -> Option<(u32, u32)> {
    if !remote.ip().to_canonical().is_loopback() {
        return None;
    }
    let uid = match diag_uid(remote, local) {
        Ok(uid) => uid,
        Err(e) => {
            tracing::debug!(error = %e, "socket diagnostics unavailable; reading /proc/net/tcp");
            proc_uid(remote, local)
        }
    }?;
    Some((uid, primary_gid(uid).unwrap_or(uid)))
}

/// The exact-lookup request for the client's socket: its source is `remote` (the client's
/// address as we see it), its destination our `local`.
fn diag_request(remote: SocketAddr, local: SocketAddr, v4: bool) -> [u8; HEADER + REQUEST] {
    let mut m = [0u8; HEADER + REQUEST];
    m[0..4].copy_from_slice(&((HEADER + REQUEST) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    // nlmsg_seq 1 (one request per socket), nlmsg_pid 0: to the kernel.
    m[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let r = &mut m[HEADER..];
    let family = if v4 {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    // Both fit a byte: 2 and 10.
    r[0] = family.as_raw() as u8;
    r[1] = IPPROTO_TCP;
    // idiag_ext 0, pad 0; idiag_states: any state.
    r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    // struct inet_diag_sockid: ports and addresses in network order.
    r[8..10].copy_from_slice(&remote.port().to_be_bytes());
    r[10..12].copy_from_slice(&local.port().to_be_bytes());
    put_addr(&mut r[12..28], remote.ip(), v4);
    put_addr(&mut r[28..44], local.ip(), v4);
    // idiag_if 0 (any), then the cookie.
    r[48..52].copy_from_slice(&NO_COOKIE.to_ne_bytes());
    r[52..56].copy_from_slice(&NO_COOKIE.to_ne_bytes());
    m
}

fn put_addr(out: &mut [u8], ip: IpAddr, v4: bool) {
    match (ip.to_canonical(), v4) {
        (IpAddr::V4(a), true) => out[..4].copy_from_slice(&a.octets()),
        (IpAddr::V4(a), false) => out.copy_from_slice(&a.to_ipv6_mapped().octets()),
        (IpAddr::V6(a), _) => out.copy_from_slice(&a.octets()),
    }
}

/// Reads the uid out of the kernel's answer to [`diag_request`]: `Ok(None)` when there is
/// no such socket.
fn parse_answer(a: &[u8]) -> Result<Option<u32>, DiagError> {
    let word = |at: usize| -> Option<u32> {
        a.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let kind = a
        .get(4..6)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or(DiagError::Answer(a.len(), 0))?;
    match kind {
        SOCK_DIAG_BY_FAMILY if a.len() >= HEADER + MESSAGE => Ok(word(HEADER + UID_AT)),
        NLMSG_ERROR => match word(HEADER).map(|e| e as i32) {
            // -ENOENT: no socket with those addresses (the client has gone).
            Some(-2) => Ok(None),
            Some(e) => Err(DiagError::Kernel(e)),
            None => Err(DiagError::Answer(a.len(), kind)),
        },
        _ => Err(DiagError::Answer(a.len(), kind)),
    }
}

fn diag_uid(remote: SocketAddr, local: SocketAddr) -> Result<Option<u32>, DiagError> {
    let both_v4 = matches!(remote.ip().to_canonical(), IpAddr::V4(_))
        && matches!(local.ip().to_canonical(), IpAddr::V4(_));
    if !both_v4 {
        return diag_lookup(remote, local, false);
    }
    match diag_lookup(remote, local, true)? {
        Some(uid) => Ok(Some(uid)),
        // Seen through a dual-stack listener, an IPv4 client may still hold an IPv6 socket
        // (connected to `::ffff:127.0.0.1`).
        None if remote.is_ipv6() => diag_lookup(remote, local, false),
        None => Ok(None),
    }
}

fn diag_lookup(remote: SocketAddr, local: SocketAddr, v4: bool) -> Result<Option<u32>, DiagError> {
    let fd = socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )?;
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(Duration::from_secs(1)))?;
    let request = diag_request(remote, local, v4);
    send(&fd, &request, SendFlags::empty())?;
    let mut answer = [0u8; 512];
    let (n, _) = recv(&fd, &mut answer[..], RecvFlags::empty())?;
    parse_answer(&answer[..n])
}

/// `IPPROTO_TCP`.
const IPPROTO_TCP: u8 = 6;

/// The same answer from `/proc/net/tcp` and `/proc/net/tcp6` (the client's socket has our
/// address as its remote).
fn proc_uid(remote: SocketAddr, local: SocketAddr) -> Option<u32> {
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                continue;
            }
            let (Some(l), Some(r)) = (parse_proc_addr(f[1]), parse_proc_addr(f[2])) else {
                continue;
            };
            if same(l, remote) && same(r, local) {
                return f[7].parse().ok();
            }
        }
    }
    None
}

fn same(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:PORT` (IPv6): each 32-bit word in host (little
/// endian) order, the port big-endian.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    match ip.len() {
        8 => {
            let w = u32::from_str_radix(ip, 16).ok()?;
            Some(SocketAddr::new(
                IpAddr::V4(std::net::Ipv4Addr::from(w.to_le_bytes())),
                port,
            ))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            Some(SocketAddr::new(
                IpAddr::V6(std::net::Ipv6Addr::from(bytes)),
                port,
            ))
        }
        _ => None,
    }
}

fn primary_gid(uid: u32) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2].parse::<u32>().ok() == Some(uid))
            .then(|| f[3].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> u32 {
        rustix::process::getuid().as_raw()
    }

    fn pair(bind: &str) -> (std::net::TcpStream, std::net::TcpStream, SocketAddr) {
        let l = std::net::TcpListener::bind(bind).unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, remote) = l.accept().unwrap();
        (c, s, remote)
    }

    #[test]
    fn proc_addresses() {
        assert_eq!(
            parse_proc_addr("0100007F:1F90").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:0050").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert!(parse_proc_addr("zz:1").is_none());
    }

    #[test]
    fn the_kernel_and_proc_name_the_same_owner_of_a_loopback_client() {
        let (c, s, remote) = pair("127.0.0.1:0");
        let local = s.local_addr().unwrap();
        assert_eq!(diag_uid(remote, local).unwrap(), Some(me()));
        assert_eq!(proc_uid(remote, local), Some(me()));
        assert_eq!(owner(remote, local).map(|o| o.0), Some(me()));
        drop(c);
    }

    #[test]
    fn an_ipv6_loopback_client_is_found_too() {
        let Ok(l) = std::net::TcpListener::bind("[::1]:0") else {
            return; // no IPv6 loopback on this machine
        };
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, remote) = l.accept().unwrap();
        assert_eq!(
            diag_uid(remote, s.local_addr().unwrap()).unwrap(),
            Some(me())
        );
        drop(c);
    }

    #[test]
    fn a_socket_that_does_not_exist_has_no_owner() {
        // Port 1 to port 1 on loopback: nothing here connects that way.
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(diag_uid(nobody, nobody).unwrap(), None);
        assert_eq!(proc_uid(nobody, nobody), None);
    }

    #[test]
    fn callers_off_loopback_are_not_looked_up() {
        let remote: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let local: SocketAddr = "192.0.2.2:2375".parse().unwrap();
        assert_eq!(owner(remote, local), None);
    }

    #[test]
    fn short_or_foreign_answers_are_errors_not_owners() {
        assert!(parse_answer(&[]).is_err());
        let mut a = [0u8; HEADER + 4];
        a[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        a[HEADER..].copy_from_slice(&(-1i32).to_ne_bytes());
        assert!(matches!(parse_answer(&a), Err(DiagError::Kernel(-1))));
        a[HEADER..].copy_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(parse_answer(&a).unwrap(), None);
        let mut b = [0u8; HEADER + 10];
        b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        assert!(parse_answer(&b).is_err());
    }
}
