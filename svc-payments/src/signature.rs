//! Stripe's webhook signatures: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=...]`,
//! HMAC-SHA256 over `<t>.<payload>` keyed with the endpoint's signing secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Older signatures are refused, so a captured delivery cannot be replayed later.
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("Stripe-Signature header is missing")]
    Missing,
    #[error("Stripe-Signature header is malformed")]
    Malformed,
    #[error("Stripe-Signature timestamp is outside the tolerance")]
    Stale,
    #[error("Stripe-Signature does not match the payload")]
    Mismatch,
}

/// Checks `header` against `payload` at time `now` (unix seconds), in constant time.
pub fn verify(
    secret: &str,
    header: Option<&str>,
    payload: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.push(decode_hex(sig).ok_or(SignatureError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let ok = signatures
        .iter()
        .any(|sig| mac.clone().verify_slice(sig).is_ok());
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header Stripe would send for `payload` at `timestamp`.
pub fn sign(secret: &str, payload: &[u8], timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length works");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={timestamp},v1={hex}")
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1"}"#;

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let header = sign(SECRET, BODY, 1_000);
        assert_eq!(verify(SECRET, Some(&header), BODY, 1_010), Ok(()));
        let two = format!("{},v1={}", header, "00".repeat(32));
        assert_eq!(
            verify(SECRET, Some(&two), BODY, 1_010),
            Ok(()),
            "any v1 may match"
        );
    }

    #[test]
    fn wrong_secret_altered_body_old_or_missing_signatures_are_refused() {
        let header = sign(SECRET, BODY, 1_000);
        let cases = [
            (
                verify("whsec_other", Some(&header), BODY, 1_000),
                SignatureError::Mismatch,
                "wrong secret",
            ),
            (
                verify(SECRET, Some(&header), br#"{"id":"evt_2"}"#, 1_000),
                SignatureError::Mismatch,
                "altered body",
            ),
            (
                verify(SECRET, Some(&header), BODY, 1_000 + 301),
                SignatureError::Stale,
                "too old",
            ),
            (
                verify(SECRET, Some(&header), BODY, 1_000 - 301),
                SignatureError::Stale,
                "from the future",
            ),
            (
                verify(SECRET, None, BODY, 1_000),
                SignatureError::Missing,
                "no header",
            ),
            (
                verify(SECRET, Some("t=1000"), BODY, 1_000),
                SignatureError::Malformed,
                "no v1",
            ),
            (
                verify(SECRET, Some("v1=zz,t=1000"), BODY, 1_000),
                SignatureError::Malformed,
                "bad hex",
            ),
            (
                verify(SECRET, Some("garbage"), BODY, 1_000),
                SignatureError::Malformed,
                "garbage",
            ),
        ];
        for (got, want, case) in cases {
            assert_eq!(got, Err(want), "case: {case}");
        }
    }
}
