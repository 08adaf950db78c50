//! OAuth 2.0 as QuickBooks does it: refresh tokens that rotate (the superseded one dies
//! with `invalid_grant`) and access tokens that expire.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No or malformed `Authorization` header.
    Malformed,
    /// A token the emulator never issued (or revoked).
    Unknown,
    /// An issued token past its lifetime.
    Expired,
}

/// A successful refresh.
#[derive(Debug, Clone)]
pub struct Issued {
    /// New access token.
    pub access_token: String,
    /// Refresh token to use next time (new when rotating).
    pub refresh_token: String,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
}

/// Token bookkeeping.
#[derive(Debug)]
pub struct AuthState {
    current_refresh: String,
    access: HashMap<String, Instant>,
    used: HashSet<String>,
    issued: Vec<String>,
    ttl: Duration,
    rotate: bool,
    expire_after: Option<u64>,
}

fn random_token(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{tail}")
}

impl AuthState {
    /// Starts with one valid refresh token and no access token.
    pub fn new(refresh_token: String, ttl: Duration, rotate: bool) -> Self {
        AuthState {
            issued: vec![refresh_token.clone()],
            current_refresh: refresh_token,
            access: HashMap::new(),
            used: HashSet::new(),
            ttl,
            rotate,
            expire_after: None,
        }
    }

    /// Exchanges a refresh token; `None` means `invalid_grant`.
    pub fn refresh(&mut self, refresh_token: &str) -> Option<Issued> {
        if refresh_token != self.current_refresh {
            return None;
        }
        if self.rotate {
            self.current_refresh = random_token("AB117", 45);
            self.issued.push(self.current_refresh.clone());
        }
        let access = random_token("eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..", 120);
        self.access
            .insert(access.clone(), Instant::now() + self.ttl);
        self.issued.push(access.clone());
        Some(Issued {
            access_token: access,
            refresh_token: self.current_refresh.clone(),
            expires_in: self.ttl.as_secs(),
        })
    }

    /// Checks a bearer token for one data request (and counts the request towards a
    /// scheduled expiry).
    pub fn authorize(&mut self, token: Option<&str>) -> Result<(), Rejection> {
        if let Some(n) = self.expire_after.as_mut() {
            if *n == 0 {
                self.expire_all();
                self.expire_after = None;
            } else {
                *n -= 1;
            }
        }
        let token = token.ok_or(Rejection::Malformed)?;
        if token.len() < 16 || token.len() > 4096 {
            return Err(Rejection::Malformed);
        }
        let expires = *self.access.get(token).ok_or(Rejection::Unknown)?;
        if Instant::now() >= expires {
            return Err(Rejection::Expired);
        }
        self.used.insert(token.to_string());
        Ok(())
    }

    /// Expires every access token now.
    pub fn expire_all(&mut self) {
        let past = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        for v in self.access.values_mut() {
            *v = past;
        }
    }

    /// Expires every access token after `n` more data requests have been authorized.
    pub fn expire_after(&mut self, n: u64) {
        self.expire_after = Some(n);
    }

    /// Makes the current refresh token invalid (a revoked connection).
    pub fn revoke_refresh(&mut self) {
        self.current_refresh = random_token("revoked-", 30);
    }

    /// The refresh token that works now.
    pub fn current_refresh(&self) -> &str {
        &self.current_refresh
    }

    /// Whether `access_token` has authorized any request yet.
    pub fn was_used(&self, access_token: &str) -> bool {
        self.used.contains(access_token)
    }

    /// Every secret ever issued (refresh and access tokens), for leak tests.
    pub fn issued(&self) -> &[String] {
        &self.issued
    }
}

/// Decodes standard base64 (for `Authorization: Basic`), ignoring padding.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_credentials() {
        assert_eq!(
            base64_decode("dXNlcjpwYXNz").as_deref(),
            Some(&b"user:pass"[..])
        );
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn rotation_kills_the_old_refresh_token() {
        let mut a = AuthState::new("r0-initial-refresh".into(), Duration::from_secs(60), true);
        let first = a.refresh("r0-initial-refresh").expect("valid");
        assert_ne!(first.refresh_token, "r0-initial-refresh");
        assert!(a.refresh("r0-initial-refresh").is_none());
        assert!(a.authorize(Some(&first.access_token)).is_ok());
        a.expire_all();
        assert_eq!(
            a.authorize(Some(&first.access_token)),
            Err(Rejection::Expired)
        );
    }
}
