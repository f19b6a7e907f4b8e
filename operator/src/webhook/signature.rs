//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw body, hex, after `sha256=`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::sources::SecretValue;

/// The header GitHub puts the signature in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Why a signature does not verify. Deliberately vague towards the sender:
/// both answer 401 with the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `sha256=` and 64 hex digits.
    #[error("malformed signature header")]
    Malformed,
    /// Well-formed, but not the HMAC of this body with this secret.
    #[error("signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// A stable name for logs.
    pub fn category(&self) -> &'static str {
        match self {
            SignatureError::Malformed => "malformed",
            SignatureError::Mismatch => "mismatch",
        }
    }
}

/// Checks `header` (the value of `X-Hub-Signature-256`) against the HMAC of
/// `body` under `secret`, in constant time (`Mac::verify_slice`).
pub fn verify(secret: &SecretValue, header: &[u8], body: &[u8]) -> Result<(), SignatureError> {
    let hex = header.strip_prefix(b"sha256=").ok_or(SignatureError::Malformed)?;
    let expected = decode_hex(hex).ok_or(SignatureError::Malformed)?;
    // HMAC takes keys of any length; the error cannot happen, but is not
    // worth a panic either.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// The `sha256=<hex>` header value for `body` under `secret`: what GitHub
/// sends, for tests and for tools that sign deliveries.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        // Unreachable for HMAC (any key length works); an empty string never verifies.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 2 * digest.len());
    out.push_str("sha256=");
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Exactly 32 bytes from 64 hex digits (either case), else `None`. The length
/// is fixed, so comparing lengths leaks nothing about the secret.
fn decode_hex(hex: &[u8]) -> Option<[u8; 32]> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretValue {
        SecretValue::new(s.as_bytes().to_vec())
    }

    #[test]
    fn verifies_githubs_documented_example() {
        // From GitHub's "Validating webhook deliveries": secret "It's a Secret
        // to Everybody", payload "Hello, World!".
        let header = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let secret = secret("It's a Secret to Everybody");
        assert_eq!(verify(&secret, header, b"Hello, World!"), Ok(()));
        assert_eq!(sign(secret.expose(), b"Hello, World!").as_bytes(), header);
        let upper = header.to_ascii_uppercase();
        let upper = [b"sha256=".as_slice(), &upper[7..]].concat();
        assert_eq!(verify(&secret, &upper, b"Hello, World!"), Ok(()));
    }

    #[test]
    fn rejects_other_bodies_secrets_and_malformed_headers() {
        let header = sign(b"right", b"body");
        let header = header.as_bytes();
        assert_eq!(
            verify(&secret("right"), header, b"body!"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret("wrong"), header, b"body"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret("right"), &header[7..], b"body"),
            Err(SignatureError::Malformed)
        );
        let sha1 = b"sha1=0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            verify(&secret("right"), sha1, b"body"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&secret("right"), &header[..70], b"body"),
            Err(SignatureError::Malformed)
        );
        let mut not_hex = header.to_vec();
        not_hex[10] = b'g';
        assert_eq!(
            verify(&secret("right"), &not_hex, b"body"),
            Err(SignatureError::Malformed)
        );
    }
}
