//! Join tokens in swarm's format: `SWMTKN-1-<digest>-<secret>`, where the digest is the
//! SHA-256 of the root CA certificate in base36 padded to 50 characters and the secret is
//! 16 random bytes in base36 padded to 25.

use sha2::{Digest, Sha256};

fn base36(bytes: &[u8], width: usize) -> String {
    // Repeated division of a big-endian byte string by 36.
    let mut num: Vec<u8> = bytes.to_vec();
    let mut digits = Vec::new();
    while num.iter().any(|&b| b != 0) {
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the operating system's random number generator failed");
    b
}

/// The digest part of a token for the CA certificate `ca_der`.
pub(crate) fn ca_digest(ca_der: &[u8]) -> String {
    base36(&Sha256::digest(ca_der), 50)
}

/// A new token for the CA whose certificate (or, until the PKI exists, identity) is `ca`.
pub(crate) fn new_token(ca: &[u8]) -> String {
    let digest = Sha256::digest(ca);
    format!(
        "SWMTKN-1-{}-{}",
        base36(&digest, 50),
        base36(&random16(), 25)
    )
}

/// The same token with a fresh secret part when `rotate` is set (the CA digest stays).
pub(crate) fn rotate(old: &str, rotate: bool) -> String {
    if !rotate {
        return old.to_owned();
    }
    match old.rsplit_once('-') {
        Some((prefix, _)) => format!("{prefix}-{}", base36(&random16(), 25)),
        None => new_token(old.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape() {
        let t = new_token(b"ca");
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(parts.len(), 4, "{t}");
        assert_eq!(parts[0], "SWMTKN");
        assert_eq!(parts[1], "1");
        assert_eq!(parts[2].len(), 50);
        assert_eq!(parts[3].len(), 25);
        // Same CA, same digest; fresh secret each time.
        let u = new_token(b"ca");
        assert_eq!(t[..60], u[..60]);
        assert_ne!(t, u);
    }

    #[test]
    fn base36_known_values() {
        assert_eq!(base36(&[0], 3), "000");
        assert_eq!(base36(&[1, 0], 1), "74"); // 256
        assert_eq!(base36(&[0xff; 16], 25), "f5lxx1zz5pnorynqglhzmsp33");
    }
}
