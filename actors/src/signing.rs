//! Signed webhooks per the Standard Webhooks specification (standardwebhooks.com): each request
//! carries `webhook-id`, `webhook-timestamp` and `webhook-signature`, where a signature is
//! `v1,` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")). Several secrets (key
//! rotation) give several space-separated signatures, so a worker verifies with any Standard
//! Webhooks library and either key.
//!
//! It never logs or shows a secret: `Debug` prints only how many keys there are.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::hmac;

/// The prefix Standard Webhooks secrets carry.
const PREFIX: &str = "whsec_";
/// Shortest secret accepted, in bytes (the spec recommends 24 to 64).
const MIN_SECRET_BYTES: usize = 16;

/// The keys requests are signed with (`CARRIER_WEBHOOK_SIGNING_SECRET`).
#[derive(Clone)]
pub struct SigningKeys(Vec<hmac::Key>);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeys({} key(s), redacted)", self.0.len())
    }
}

impl PartialEq for SigningKeys {
    /// Keys are opaque; two sets are equal when they have as many keys (enough for config tests).
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
    }
}

impl SigningKeys {
    /// Parses a space-separated list of `whsec_<base64>` secrets. Errors never quote the secret.
    pub fn parse(value: &str) -> Result<SigningKeys, String> {
        let mut keys = Vec::new();
        for (n, secret) in value.split_whitespace().enumerate() {
            let which = n + 1;
            let Some(encoded) = secret.strip_prefix(PREFIX) else {
                return Err(format!("secret #{which} must start with {PREFIX}"));
            };
            let bytes = STANDARD
                .decode(encoded)
                .map_err(|_| format!("secret #{which} is not {PREFIX} followed by base64"))?;
            if bytes.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "secret #{which} is {} bytes; at least {MIN_SECRET_BYTES} are needed",
                    bytes.len()
                ));
            }
            keys.push(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
        }
        if keys.is_empty() {
            return Err(format!("expected one or more {PREFIX}… secrets"));
        }
        Ok(SigningKeys(keys))
    }

    /// The `webhook-signature` value for one request: `v1,<sig>` per key, space-separated.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut out = String::with_capacity(48 * self.0.len());
        for key in &self.0 {
            let mut ctx = hmac::Context::with_key(key);
            ctx.update(id.as_bytes());
            ctx.update(b".");
            ctx.update(timestamp.to_string().as_bytes());
            ctx.update(b".");
            ctx.update(body);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("v1,");
            STANDARD.encode_string(ctx.sign().as_ref(), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_reference_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let keys = SigningKeys::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = keys.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn each_secret_of_a_rotation_list_signs() {
        let keys = SigningKeys::parse(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw  whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .unwrap();
        let sig = keys.sign("id", 1, b"x");
        assert_eq!(sig.split(' ').count(), 2);
        assert!(sig.split(' ').all(|s| s.starts_with("v1,")));
    }

    #[test]
    fn malformed_secrets_are_refused_without_quoting_them() {
        for (bad, why) in [
            ("", "one or more"),
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with whsec_"),
            ("whsec_not*base64", "base64"),
            ("whsec_c2hvcnQ=", "at least 16"),
        ] {
            let err = SigningKeys::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            if !bad.is_empty() {
                assert!(!err.contains(bad), "the secret is not quoted: {err}");
            }
        }
        let keys = SigningKeys::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(!format!("{keys:?}").contains("MfKQ"));
    }
}
