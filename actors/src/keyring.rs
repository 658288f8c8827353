//! Sealing and unsealing a launch's env values: XChaCha20-Poly1305 with a random 24-byte nonce
//! per value, the instance id and the env name as associated data. Pure: the keys come in as
//! bytes (`tgp`'s `secrets` module reads them from files).
//!
//! # Guarantees
//! - A sealed value opens only with the key that sealed it, for the same instance and variable:
//!   moved to another launch or renamed, it fails to open, it never opens to a wrong value.
//! - The first key of a [`Keyring`] seals; every key opens. Rotation: put the new key first and
//!   keep the old ones until no live chain was sealed with them.
//! - Nothing here prints a key or a plain value; `Debug` shows key ids only.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use tgp_events::sealed::{SealedValue, Secret};
use tgp_events::{InstanceId, LaunchCommand, LaunchRequest};

/// The bytes of a key.
pub const KEY_BYTES: usize = 32;

/// One sealing key and its id (derived from the key, so an id can never name another key).
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl SecretKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        let digest = Sha256::new().chain_update(b"tgp secrets key id v1\0").chain_update(bytes).finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect::<String>();
        SecretKey { id: format!("k-{id}"), cipher: XChaCha20Poly1305::new(bytes.into()) }
    }

    /// A new random key (for `tgp secrets keygen`, the demo and tests).
    pub fn generate() -> [u8; KEY_BYTES] {
        XChaCha20Poly1305::generate_key(&mut OsRng).into()
    }

    /// The id journaled beside every value this key seals.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

/// Why a value cannot be sealed or opened. Names the variable and the key id, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A launch carries env values and tgp has no key to seal them with.
    #[error(
        "env values ({names}) need a secrets key to be journaled sealed, and tgp has none: make one with \
         `tgp secrets keygen FILE` and start tgp with --secrets-key FILE (or TGP_SECRETS_KEY)"
    )]
    NoKey {
        /// The env names of the launch.
        names: String,
    },
    /// The value was sealed with a key this tgp was not given.
    #[error("env {name} is sealed with key {key}, which tgp was not given (--secrets-key)")]
    UnknownKey {
        /// The env name.
        name: String,
        /// The key id in the journal.
        key: String,
    },
    /// The value does not open: tampered with, or moved from another launch or variable.
    #[error("env {name} does not open with key {key}: it was altered, or moved from another launch or variable")]
    Tampered {
        /// The env name.
        name: String,
        /// The key id.
        key: String,
    },
}

/// The keys tgp seals and opens env values with; the first seals.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: Vec<SecretKey>,
}

/// What binds a value to its place: the instance id and the env name, length-prefixed so no two
/// pairs make the same bytes.
fn associated_data(instance: &InstanceId, name: &str) -> Vec<u8> {
    let id = instance.to_string();
    format!("tgp env v1\0{}\0{id}\0{}\0{name}", id.len(), name.len()).into_bytes()
}

impl Keyring {
    /// A ring of `keys`; the first seals. An empty ring seals nothing and refuses env values.
    pub fn new(keys: Vec<SecretKey>) -> Self {
        Keyring { keys }
    }

    /// The id of the key that seals, if any.
    pub fn sealing_key(&self) -> Option<&str> {
        self.keys.first().map(SecretKey::id)
    }

    /// Seals one value for variable `name` of `instance`.
    pub fn seal(&self, instance: &InstanceId, name: &str, value: &Secret) -> Result<SealedValue, SealError> {
        let key = self.keys.first().ok_or_else(|| SealError::NoKey { names: name.to_string() })?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(instance, name);
        let sealed = key
            .cipher
            .encrypt(&nonce, Payload { msg: value.expose().as_bytes(), aad: &aad })
            .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
        Ok(SealedValue { key: key.id.clone(), nonce: STANDARD.encode(nonce), sealed: STANDARD.encode(sealed) })
    }

    /// Opens one value of variable `name` of `instance`.
    pub fn unseal(&self, instance: &InstanceId, name: &str, value: &SealedValue) -> Result<Secret, SealError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == value.key)
            .ok_or_else(|| SealError::UnknownKey { name: name.to_string(), key: value.key.clone() })?;
        let tampered = || SealError::Tampered { name: name.to_string(), key: value.key.clone() };
        let nonce = STANDARD.decode(&value.nonce).map_err(|_| tampered())?;
        if nonce.len() != 24 {
            return Err(tampered());
        }
        let sealed = STANDARD.decode(&value.sealed).map_err(|_| tampered())?;
        let aad = associated_data(instance, name);
        let plain = key
            .cipher
            .decrypt(XNonce::from_slice(&nonce), Payload { msg: &sealed, aad: &aad })
            .map_err(|_| tampered())?;
        String::from_utf8(plain).map(Secret::new).map_err(|_| tampered())
    }

    /// The launch as it may be journaled: every env value sealed for `instance`. A launch without
    /// env needs no key.
    pub fn seal_launch(&self, instance: &InstanceId, command: LaunchCommand) -> Result<LaunchRequest, SealError> {
        if !command.env.is_empty() && self.keys.is_empty() {
            let names = command.env.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(SealError::NoKey { names });
        }
        let env = command
            .env
            .iter()
            .map(|(name, value)| Ok((name.clone(), self.seal(instance, name, value)?)))
            .collect::<Result<BTreeMap<_, _>, SealError>>()?;
        Ok(command.with_env(env))
    }

    /// The plain env of a journaled launch, to hand to a provider.
    pub fn unseal_env(
        &self,
        instance: &InstanceId,
        env: &BTreeMap<String, SealedValue>,
    ) -> Result<BTreeMap<String, Secret>, SealError> {
        env.iter().map(|(name, value)| Ok((name.clone(), self.unseal(instance, name, value)?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::new(vec![SecretKey::from_bytes(&SecretKey::generate())])
    }

    fn id(s: &str) -> InstanceId {
        s.parse().unwrap()
    }

    fn secret(s: &str) -> Secret {
        Secret::new(s.to_string())
    }

    #[test]
    fn a_value_opens_for_its_own_instance_and_name() {
        let ring = ring();
        let sealed = ring.seal(&id("i-1"), "HF_TOKEN", &secret("hf_abc123")).unwrap();
        assert_eq!(sealed.key, ring.sealing_key().unwrap());
        assert!(!serde_json::to_string(&sealed).unwrap().contains("hf_abc123"));
        assert_eq!(ring.unseal(&id("i-1"), "HF_TOKEN", &sealed).unwrap().expose(), "hf_abc123");
        let again = ring.seal(&id("i-1"), "HF_TOKEN", &secret("hf_abc123")).unwrap();
        assert_ne!(again.nonce, sealed.nonce, "a fresh nonce per value");
    }

    #[test]
    fn a_moved_value_does_not_open() {
        let ring = ring();
        let sealed = ring.seal(&id("i-1"), "HF_TOKEN", &secret("hf_abc123")).unwrap();
        assert!(matches!(ring.unseal(&id("i-2"), "HF_TOKEN", &sealed), Err(SealError::Tampered { .. })));
        assert!(matches!(ring.unseal(&id("i-1"), "AWS_SECRET", &sealed), Err(SealError::Tampered { .. })));
        let mut altered = sealed.clone();
        altered.sealed = STANDARD.encode(b"0123456789abcdef0123456789");
        assert!(matches!(ring.unseal(&id("i-1"), "HF_TOKEN", &altered), Err(SealError::Tampered { .. })));
    }

    #[test]
    fn a_wrong_key_does_not_open() {
        let sealed = ring().seal(&id("i-1"), "HF_TOKEN", &secret("hf_abc123")).unwrap();
        let other = ring();
        let err = other.unseal(&id("i-1"), "HF_TOKEN", &sealed).unwrap_err();
        assert!(matches!(err, SealError::UnknownKey { .. }), "{err}");
        // The same id with other key bytes (a forged id) fails to open, it never opens wrongly.
        let mut forged = sealed;
        forged.key = other.sealing_key().unwrap().to_string();
        assert!(matches!(other.unseal(&id("i-1"), "HF_TOKEN", &forged), Err(SealError::Tampered { .. })));
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_all() {
        let old = SecretKey::from_bytes(&SecretKey::generate());
        let new = SecretKey::from_bytes(&SecretKey::generate());
        let sealed_old = Keyring::new(vec![old.clone()]).seal(&id("i-1"), "A", &secret("v")).unwrap();
        let rotated = Keyring::new(vec![new.clone(), old]);
        assert_eq!(rotated.unseal(&id("i-1"), "A", &sealed_old).unwrap().expose(), "v");
        assert_eq!(rotated.seal(&id("i-1"), "A", &secret("v")).unwrap().key, new.id());
    }

    #[test]
    fn without_a_key_env_is_refused_and_no_env_is_fine() {
        let with_env = LaunchCommand::from_json(
            br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3","env":{"HF_TOKEN":"hf_abc123"}}"#,
        )
        .unwrap();
        let err = Keyring::default().seal_launch(&id("i-1"), with_env.clone()).unwrap_err();
        assert!(err.to_string().contains("HF_TOKEN") && err.to_string().contains("--secrets-key"), "{err}");
        assert!(!err.to_string().contains("hf_abc123"));
        let plain = LaunchCommand::from_json(br#"{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3"}"#).unwrap();
        assert!(Keyring::default().seal_launch(&id("i-1"), plain).is_ok());
        let ring = ring();
        let sealed = ring.seal_launch(&id("i-1"), with_env).unwrap();
        let journaled = serde_json::to_string(&sealed).unwrap();
        assert!(journaled.contains("HF_TOKEN") && !journaled.contains("hf_abc123"), "{journaled}");
        assert_eq!(ring.unseal_env(&id("i-1"), &sealed.env).unwrap()["HF_TOKEN"].expose(), "hf_abc123");
    }

    #[test]
    fn key_ids_are_stable_and_distinct() {
        let bytes = SecretKey::generate();
        assert_eq!(SecretKey::from_bytes(&bytes).id(), SecretKey::from_bytes(&bytes).id());
        assert_ne!(SecretKey::from_bytes(&bytes).id(), SecretKey::from_bytes(&SecretKey::generate()).id());
        assert!(!format!("{:?}", ring()).contains(&format!("{bytes:?}")));
    }
}
