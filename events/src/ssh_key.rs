//! The one form of SSH public key a launch accepts: a single OpenSSH line,
//! `<type> <base64 key> [comment]`, whose key names the same type it is labelled with.
//!
//! Providers install the text as given (RunPod splits it into lines, so a key with a newline became
//! two keys); checking the form here keeps a second key, an `authorized_keys` option such as
//! `command="..."`, or stray text from ever reaching a machine.

use crate::limits::{MAX_SSH_KEY_BYTES, quote};

/// Key types OpenSSH accepts for user authentication today (DSA keys are no longer accepted).
pub const KEY_TYPES: [&str; 7] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Why a text is not one OpenSSH public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ssh_public_key {quoted} is not one OpenSSH public key: {why}")]
pub struct InvalidSshKey {
    /// The text, quoted as refusals quote (at most 200 bytes).
    pub quoted: String,
    /// What is wrong with it.
    pub why: String,
}

/// Checks that `text` is one OpenSSH public key line (`ssh-ed25519 AAAA... user@host`).
pub fn check(text: &str) -> Result<(), InvalidSshKey> {
    let invalid = |why: String| InvalidSshKey { quoted: quote(text), why };
    if text.len() > MAX_SSH_KEY_BYTES {
        return Err(invalid(format!("it is {} bytes, at most {MAX_SSH_KEY_BYTES} are allowed", text.len())));
    }
    if text.contains(['\n', '\r']) {
        return Err(invalid("it has more than one line; give exactly one key".into()));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid("it holds control characters".into()));
    }
    let mut fields = text.splitn(3, ' ');
    let (key_type, blob) = (fields.next().unwrap_or_default(), fields.next().unwrap_or_default());
    if !KEY_TYPES.contains(&key_type) {
        return Err(invalid(format!("it must start with a key type ({}), as a .pub file does", KEY_TYPES.join(", "))));
    }
    let decoded = base64_decode(blob).ok_or_else(|| invalid("the key after the type is not base64".into()))?;
    // The blob starts with the type again, as a length-prefixed string (RFC 4253, section 6.6).
    let named = decoded
        .get(..4)
        .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
        .and_then(|len| decoded.get(4..4 + len));
    if named != Some(key_type.as_bytes()) {
        return Err(invalid(format!("the key data is not a {key_type} key")));
    }
    Ok(())
}

/// Standard base64 with padding, as OpenSSH writes it; `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.as_bytes();
    let padding = bytes.iter().rev().take_while(|&&c| c == b'=').count();
    if padding > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let mut n = 0u32;
        for (j, &c) in chunk.iter().enumerate() {
            let v = if c == b'=' && last && j >= 4 - padding { 0 } else { value(c)? };
            n = n << 6 | v;
        }
        let [_, a, b, c] = n.to_be_bytes();
        let keep = if last { 3 - padding } else { 3 };
        out.extend_from_slice(&[a, b, c][..keep]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtQUDn9yRvtM3eSZXF1TKbqBVD/23JqbW1ZSVSbEwnj alice@laptop";

    #[test]
    fn a_public_key_line_is_accepted() {
        check(ED25519).unwrap();
        check(ED25519.rsplit_once(' ').unwrap().0).unwrap();
        check("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtQUDn9yRvtM3eSZXF1TKbqBVD/23JqbW1ZSVSbEwnj a comment with spaces")
            .unwrap();
    }

    #[test]
    fn anything_else_is_refused_with_why() {
        let two = format!("{ED25519}\n{ED25519}");
        let optioned = format!("command=\"rm -rf /\" {ED25519}");
        let mislabelled = ED25519.replacen("ssh-ed25519", "ssh-rsa", 1);
        let huge = format!("{ED25519}{}", "x".repeat(900_000));
        for (text, why) in [
            (two.as_str(), "more than one line"),
            (optioned.as_str(), "must start with a key type"),
            (mislabelled.as_str(), "not a ssh-rsa key"),
            ("ssh-ed25519 not-base64!", "not base64"),
            ("ssh-ed25519", "not base64"),
            ("", "must start with a key type"),
            ("ssh-dss AAAAB3NzaC1kc3M=", "must start with a key type"),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtQ\u{7}", "control characters"),
            (huge.as_str(), "at most 8192"),
        ] {
            let err = check(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.len() < 600, "a refusal quotes 200 bytes at most: {}", err.len());
        }
    }

    #[test]
    fn base64_decodes_as_openssh_writes_it() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aA==").unwrap(), b"h");
        for bad in ["aGk", "a===", "aG=k", "====", "aGk*"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }
}
