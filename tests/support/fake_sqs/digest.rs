//! The digests and encodings SQS puts on the wire: MD5 (`MD5OfBody`, `MD5OfMessageAttributes`,
//! computed the way SQS documents it), SHA-256 (content-based deduplication ids) and base64
//! (Binary attribute values). Small local versions, because the test crate's dependencies are
//! the lead's to choose; each is checked against known vectors in tests/conformance.rs.

use std::collections::BTreeMap;

/// A message attribute as SQS stores it: a data type (`String`, `Number`, `Binary`, optionally
/// with a `.custom` suffix) and either a string or raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeValue {
    pub data_type: String,
    pub string_value: Option<String>,
    pub binary_value: Option<Vec<u8>>,
}

impl AttributeValue {
    pub fn string(value: &str) -> AttributeValue {
        AttributeValue {
            data_type: "String".into(),
            string_value: Some(value.into()),
            binary_value: None,
        }
    }

    pub fn number(value: &str) -> AttributeValue {
        AttributeValue {
            data_type: "Number".into(),
            string_value: Some(value.into()),
            binary_value: None,
        }
    }

    pub fn binary(value: &[u8]) -> AttributeValue {
        AttributeValue {
            data_type: "Binary".into(),
            string_value: None,
            binary_value: Some(value.to_vec()),
        }
    }

    pub fn is_binary(&self) -> bool {
        self.data_type.starts_with("Binary")
    }
}

/// SQS's MD5 of a set of message attributes: for each attribute in name order, the name, the
/// data type and the value, each as a 4-byte big-endian length and its bytes, with a transport
/// byte (1 string, 2 binary) before the value. `None` for an empty set (SQS then omits it).
pub fn attributes_md5(attributes: &BTreeMap<String, AttributeValue>) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let mut buf = Vec::new();
    let put = |bytes: &[u8], buf: &mut Vec<u8>| {
        buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        buf.extend_from_slice(bytes);
    };
    for (name, value) in attributes {
        put(name.as_bytes(), &mut buf);
        put(value.data_type.as_bytes(), &mut buf);
        if value.is_binary() {
            buf.push(2);
            put(value.binary_value.as_deref().unwrap_or_default(), &mut buf);
        } else {
            buf.push(1);
            put(
                value.string_value.as_deref().unwrap_or_default().as_bytes(),
                &mut buf,
            );
        }
    }
    Some(md5_hex(&buf))
}

pub fn md5_hex(data: &[u8]) -> String {
    hex(&md5(data))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha256(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 (RFC 1321), as SQS uses it for its message digests.
pub fn md5(data: &[u8]) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(data).into()
}

/// SHA-256, as SQS uses it for content-based deduplication ids.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

/// Standard base64 with padding (the AWS JSON protocol's encoding of binary values).
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}
