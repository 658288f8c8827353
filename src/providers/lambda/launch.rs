//! What a Lambda launch needs beyond the offer, built and checked before any call that can spend
//! money: the offer id's parts, the SSH key name, and the cloud-init user data that carries the
//! image and its environment (Lambda rents whole VMs and has no image-or-env field for
//! containers; `user_data` is the only way in).

use std::collections::BTreeMap;

use tgp_events::sealed::Secret;

use sha2::{Digest, Sha256};

/// Longest instance name Lambda takes.
pub const MAX_NAME_LEN: usize = 64;
/// Largest `user_data` Lambda takes (1 MB).
pub const MAX_USER_DATA: usize = 1_000_000;
/// The tag key tgp writes the attempt id under.
pub const ATTEMPT_TAG: &str = "tgp-attempt";

/// An offer id: `<instance type>@<region code>` (Lambda has one price per type; availability is
/// per region, so that pair is what a launch takes).
pub fn offer_id(type_name: &str, region: &str) -> String {
    format!("{type_name}@{region}")
}

/// The (instance type, region code) of an offer id, when it is one.
pub fn parse_offer_id(id: &str) -> Option<(&str, &str)> {
    let (type_name, region) = id.split_once('@')?;
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (token(type_name) && token(region)).then_some((type_name, region))
}

/// The name tgp registers a public key under: `tgp-` and 16 hex digits of the SHA-256 of the
/// key's type and body (its comment ignored), so the same key always gets the same name and is
/// registered once (dstack does the same). `None` when the text is not an OpenSSH public key.
pub fn ssh_key_name(public_key: &str) -> Option<String> {
    let mut parts = public_key.split_whitespace();
    let (kind, body) = (parts.next()?, parts.next()?);
    let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
    if !known || body.len() < 16 {
        return None;
    }
    let digest = Sha256::digest(format!("{kind} {body}").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Some(format!("tgp-{hex}"))
}

/// Quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The cloud-init user data that runs `image` with `env` under Docker on the Lambda Stack VM
/// (which ships Docker with the NVIDIA runtime). Errors say what cannot be passed.
pub fn user_data(attempt: &str, image: &str, env: &BTreeMap<String, Secret>) -> Result<String, String> {
    let image = image.trim();
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("image {image:?} is not a container image reference"));
    }
    let mut script = format!(
        "#!/bin/bash\n# tgp attempt {attempt}: runs the requested image with its environment.\nset -eu\n\
         docker run -d --restart unless-stopped --gpus all --name tgp-workload \\\n"
    );
    for (key, value) in env {
        let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("environment variable name {key:?} is not valid (letters, digits, _)"));
        }
        let value = value.expose();
        if value.contains('\0') {
            return Err(format!("environment variable {key} contains a NUL byte"));
        }
        script.push_str(&format!("  -e {} \\\n", shell_quote(&format!("{key}={value}"))));
    }
    script.push_str(&format!("  {}\n", shell_quote(image)));
    if script.len() > MAX_USER_DATA {
        return Err(format!(
            "the image and environment need {} bytes of user data; Lambda takes at most {MAX_USER_DATA}",
            script.len()
        ));
    }
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::{offer_id, parse_offer_id, ssh_key_name, user_data};
    use std::collections::BTreeMap;
    use tgp_events::sealed::Secret;

    #[test]
    fn offer_ids_round_trip() {
        let id = offer_id("gpu_1x_h100_pcie", "us-east-1");
        assert_eq!(parse_offer_id(&id), Some(("gpu_1x_h100_pcie", "us-east-1")));
        assert_eq!(parse_offer_id("gpu_1x_h100_pcie"), None);
        assert_eq!(parse_offer_id("a@b/../c"), None);
    }

    #[test]
    fn key_names_ignore_the_comment() {
        let a = ssh_key_name("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB me@host").unwrap();
        let b = ssh_key_name("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB other").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 4 + 16);
        assert_eq!(ssh_key_name("not a key"), None);
    }

    #[test]
    fn user_data_quotes_and_refuses() {
        let env = BTreeMap::from([("MSG".to_string(), Secret::new("it's $HOME".to_string()))]);
        let script = user_data("tgp-a-1", "nvcr.io/x:1", &env).unwrap();
        assert!(script.contains(r"-e 'MSG=it'\''s $HOME'"), "{script}");
        assert!(script.contains("'nvcr.io/x:1'"));
        let bad = BTreeMap::from([("A-B".to_string(), Secret::new("x".to_string()))]);
        assert!(user_data("t", "img", &bad).unwrap_err().contains("A-B"));
        assert!(user_data("t", "two words", &BTreeMap::new()).is_err());
    }
}
