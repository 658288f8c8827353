//! Input limits: the largest value each command field may hold, and how a refusal quotes what it
//! refuses.
//!
//! Every limit is checked when a command is decoded, before anything is journaled, so no command
//! can make an event, a dead letter or a provider call larger than these. A refusal quotes at most
//! [`QUOTE_BYTES`] of the offending value, so the refusal itself always fits in a dead letter's
//! headers: every refused command can be kept. `docs/security.md` lists the same figures.

/// The most of an offending value a refusal quotes.
pub const QUOTE_BYTES: usize = 200;

/// The largest command body, in bytes (JSON as sent).
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// The longest `image`, in bytes: image references are far shorter (Docker allows 255 for the
/// name, 128 for the tag, 71 for a digest).
pub const MAX_IMAGE_BYTES: usize = 512;

/// The most `regions` a launch may list (there are 12 standard regions).
pub const MAX_REGIONS: usize = 32;

/// The most `env` variables a launch may set.
pub const MAX_ENV_VARS: usize = 64;

/// The longest `env` variable name, in bytes.
pub const MAX_ENV_NAME_BYTES: usize = 128;

/// The longest `env` value, in bytes (a PEM key or a token fits; a file does not).
pub const MAX_ENV_VALUE_BYTES: usize = 8 * 1024;

/// The most bytes of `env` names and values together.
pub const MAX_ENV_BYTES: usize = 32 * 1024;

/// The longest `ssh_public_key`, in bytes (a 16384-bit RSA key is about 2,800).
pub const MAX_SSH_KEY_BYTES: usize = 8 * 1024;

/// The longest terminate `reason`, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// The longest of every other string in a command, keys included: GPU type, region, money,
/// span, spot policy, idempotency key, instance id.
pub const MAX_SCALAR_BYTES: usize = 64;

/// The longest refusal message: a backstop over every message a decoder can produce, so that even
/// a message this crate did not word fits a dead letter.
pub const MAX_REFUSAL_BYTES: usize = 1024;

/// `text` quoted for a refusal: the whole of it when short, else its first [`QUOTE_BYTES`] bytes
/// (cut at a character boundary) and how long it was.
pub fn quote(text: &str) -> String {
    if text.len() <= QUOTE_BYTES {
        return format!("{text:?}");
    }
    format!("{:?}... ({} bytes)", &text[..floor_char_boundary(text, QUOTE_BYTES)], text.len())
}

/// `message` cut to at most [`MAX_REFUSAL_BYTES`], saying so when it was cut.
pub fn bounded(message: String) -> String {
    if message.len() <= MAX_REFUSAL_BYTES {
        return message;
    }
    let cut = floor_char_boundary(&message, MAX_REFUSAL_BYTES - 32);
    format!("{}... ({} bytes in all)", &message[..cut], message.len())
}

/// The largest index at most `at` that starts a character.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_whatever_they_quote() {
        assert_eq!(quote("H1000"), "\"H1000\"");
        let long = "é".repeat(500_000);
        let quoted = quote(&long);
        assert!(quoted.len() < QUOTE_BYTES + 40, "{}", quoted.len());
        assert!(quoted.ends_with("(1000000 bytes)"), "{quoted}");
        let message = bounded("x".repeat(900_000));
        assert!(message.len() <= MAX_REFUSAL_BYTES && message.ends_with("(900000 bytes in all)"), "{message}");
    }
}
