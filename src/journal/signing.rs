//! Signed journal messages: only tgp writes the journal, and every read checks it.
//!
//! Every message tgp stores in `TGP_EVENTS` (instance commits, provider and controller events)
//! carries an Ed25519 signature in [`HEADER_SIGNATURE`] and the id of the key in [`HEADER_KEY_ID`].
//! The signature is over [`signed_bytes`]: a domain tag, the subject, the expected last-subject
//! sequence the append stated (commits; `-` for provider and controller events, which are
//! appended without one) and the body. Binding the subject means a commit copied onto another
//! instance's subject does not verify; binding the expected sequence means it cannot be moved to
//! another place in its own instance's history without the signature breaking.
//!
//! # Where keys live
//! The private key is a file tgp holds ([`JournalKey::load`] refuses one that group or others can
//! read). Public keys are recorded in the stream's metadata ([`META_KEYS`]), one entry per key
//! ever used, so commits signed before a rotation still verify; [`META_SIGNED_FROM`] is the stream
//! sequence from which every message must be signed (what was stored before signing was switched
//! on is trusted as the operator who upgraded found it). An auditor who does not trust the
//! metadata pins keys instead ([`Verifier::pinned`]).
//!
//! Everything here but the key file's I/O is pure.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// Header: the signature, base64 (standard alphabet, padded) of 64 bytes.
pub const HEADER_SIGNATURE: &str = "Tgp-Signature";
/// Header: the signing key's id ([`key_id`]).
pub const HEADER_KEY_ID: &str = "Tgp-Key-Id";
/// Header: the expected last-subject sequence a commit was appended with, as signed. The
/// server's `Nats-Expected-Last-Subject-Sequence` enforces it at write time; this copy is what a
/// reader verifies.
pub const HEADER_EXPECTED_SEQUENCE: &str = "Tgp-Expected-Sequence";
/// Stream metadata: every public key tgp has signed with, `id=base64,id=base64`.
pub const META_KEYS: &str = "tgp.journal.keys";
/// Stream metadata: the first stream sequence that must be signed.
pub const META_SIGNED_FROM: &str = "tgp.journal.signed_from";

/// Separates tgp's journal signatures from any other use of the same key.
const DOMAIN: &[u8] = b"tgp-journal-v1\n";

/// Why a key could not be made, read or recorded.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The key file could not be read or written.
    #[error("journal key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The key file may be read by others than its owner.
    #[error("journal key {path} is readable by group or others (mode {mode:o}): run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `keygen` would replace an existing key.
    #[error("journal key {0} exists; tgp never overwrites a key (commits signed with it need it kept)")]
    Exists(PathBuf),
    /// The file is not a key tgp wrote.
    #[error("journal key {path} is not a tgp journal key: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A public key (stream metadata or `--journal-public-key`) is not one.
    #[error("journal public key {0:?} is not base64 of 32 bytes of an Ed25519 key")]
    BadPublicKey(String),
    /// The stream's metadata could not be read or updated.
    #[error("recording the journal key in TGP_EVENTS's metadata: {0}")]
    JetStream(String),
    /// No randomness from the OS.
    #[error("no randomness from the OS for a new key: {0}")]
    Random(String),
}

/// The key tgp signs its journal messages with. Cheap to clone.
#[derive(Clone)]
pub struct JournalKey {
    /// The private key.
    key: Arc<SigningKey>,
    /// Its public key's id, in every signed message.
    id: String,
}

impl std::fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JournalKey({})", self.id)
    }
}

/// A short id of a public key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    Sha256::digest(key.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The exact bytes a journal signature covers.
pub fn signed_bytes(subject: &str, expected: Option<u64>, body: &[u8]) -> Vec<u8> {
    let expected = expected.map_or_else(|| "-".to_string(), |s| s.to_string());
    let mut bytes = Vec::with_capacity(DOMAIN.len() + subject.len() + expected.len() + body.len() + 2);
    bytes.extend_from_slice(DOMAIN);
    bytes.extend_from_slice(subject.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(expected.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(body);
    bytes
}

impl JournalKey {
    /// A key from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(&key.verifying_key());
        JournalKey { key: Arc::new(key), id }
    }

    /// A new random key.
    pub fn generate() -> Result<Self, SigningError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SigningError::Random(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// Writes a new key to `path`, readable by its owner only; refuses to replace a file.
    pub fn create(path: &Path) -> Result<Self, SigningError> {
        let key = Self::generate()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                SigningError::Exists(path.to_path_buf())
            } else {
                SigningError::Io { path: path.to_path_buf(), source }
            }
        })?;
        writeln!(file, "{}", BASE64.encode(key.key.to_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(|source| SigningError::Io { path: path.to_path_buf(), source })?;
        Ok(key)
    }

    /// Reads the key at `path`; refuses a file that group or others can read.
    pub fn load(path: &Path) -> Result<Self, SigningError> {
        let io = |source| SigningError::Io { path: path.to_path_buf(), source };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SigningError::Exposed { path: path.to_path_buf(), mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let malformed = |why: String| SigningError::Malformed { path: path.to_path_buf(), why };
        let seed = BASE64.decode(text.trim()).map_err(|e| malformed(e.to_string()))?;
        let seed: [u8; 32] = seed.try_into().map_err(|s: Vec<u8>| malformed(format!("{} bytes, not 32", s.len())))?;
        Ok(Self::from_seed(seed))
    }

    /// Its public key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its public key, base64, as recorded in the stream metadata.
    pub fn public_base64(&self) -> String {
        BASE64.encode(self.key.verifying_key().as_bytes())
    }

    /// The signature of one message, base64.
    pub fn sign(&self, subject: &str, expected: Option<u64>, body: &[u8]) -> String {
        BASE64.encode(self.key.sign(&signed_bytes(subject, expected, body)).to_bytes())
    }

    /// The signature headers of one message.
    pub fn headers(&self, subject: &str, expected: Option<u64>, body: &[u8]) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HEADER_SIGNATURE, self.sign(subject, expected, body).as_str());
        headers.insert(HEADER_KEY_ID, self.id.as_str());
        if let Some(expected) = expected {
            headers.insert(HEADER_EXPECTED_SEQUENCE, expected.to_string().as_str());
        }
        headers
    }
}

/// Parses a base64 public key.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, SigningError> {
    let bad = || SigningError::BadPublicKey(text.to_string());
    let bytes: [u8; 32] = BASE64.decode(text.trim()).map_err(|_| bad())?.try_into().map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// The keys recorded in stream metadata, by id.
pub fn recorded_keys(metadata: &HashMap<String, String>) -> Result<BTreeMap<String, VerifyingKey>, SigningError> {
    let Some(list) = metadata.get(META_KEYS) else {
        return Ok(BTreeMap::new());
    };
    list.split(',')
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (_, key) = entry.split_once('=').ok_or_else(|| SigningError::BadPublicKey(entry.to_string()))?;
            let key = parse_public_key(key)?;
            Ok((key_id(&key), key))
        })
        .collect()
}

/// The stream metadata with `key` recorded (kept keys stay) and, when the journal had no signing
/// record, signing required from `next_sequence` on. `None` when nothing changes.
pub fn with_key_recorded(
    metadata: &HashMap<String, String>,
    key: &JournalKey,
    next_sequence: u64,
) -> Result<Option<HashMap<String, String>>, SigningError> {
    let keys = recorded_keys(metadata)?;
    let has_from = metadata.contains_key(META_SIGNED_FROM);
    if keys.contains_key(key.id()) && has_from {
        return Ok(None);
    }
    let mut updated = metadata.clone();
    if !keys.contains_key(key.id()) {
        let mut list = metadata.get(META_KEYS).cloned().unwrap_or_default();
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(&format!("{}={}", key.id(), key.public_base64()));
        updated.insert(META_KEYS.into(), list);
    }
    if !has_from {
        updated.insert(META_SIGNED_FROM.into(), next_sequence.to_string());
    }
    Ok(Some(updated))
}

/// Records `key` in `TGP_EVENTS`'s metadata (keeping the keys recorded before, so their commits
/// still verify). Over a journal with no signing record, it also records that every message from
/// the next stream sequence on must be signed, and logs it: what was stored before is trusted as
/// written before signing was switched on.
pub async fn enable(js: &async_nats::jetstream::Context, key: &JournalKey) -> Result<(), SigningError> {
    let err = |e: &dyn std::fmt::Display| SigningError::JetStream(e.to_string());
    let mut stream = js.get_stream(tgp_events::subjects::EVENTS_STREAM).await.map_err(|e| err(&e))?;
    let info = stream.info().await.map_err(|e| err(&e))?;
    let next = info.state.last_sequence + 1;
    let Some(metadata) = with_key_recorded(&info.config.metadata, key, next)? else {
        return Ok(());
    };
    if !info.config.metadata.contains_key(META_SIGNED_FROM) {
        tracing::warn!(
            signed_from = next,
            "journal signing switched on: messages from stream sequence {next} on must be signed; \
             the {} stored before are trusted as they are",
            next - 1
        );
    }
    tracing::info!(key_id = key.id(), "journal key recorded in {META_KEYS}");
    let mut config = info.config.clone();
    config.metadata = metadata;
    js.update_stream(config).await.map_err(|e| err(&e))?;
    Ok(())
}

/// Publishes one signed message with no expected sequence (a provider or controller event) and
/// waits for the server to store it.
pub async fn publish(
    js: &async_nats::jetstream::Context,
    key: &JournalKey,
    subject: String,
    body: Vec<u8>,
) -> Result<(), async_nats::jetstream::context::PublishError> {
    let headers = key.headers(&subject, None, &body);
    js.publish_with_headers(subject, headers, body.into()).await?.await.map(|_| ())
}

/// Checks the signatures of journal messages against known public keys.
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    /// Keys a message may be signed with, by id.
    keys: BTreeMap<String, VerifyingKey>,
    /// Messages from this stream sequence on must be signed; `None`: signing was never switched
    /// on for this journal, nothing is checked.
    signed_from: Option<u64>,
}

impl Verifier {
    /// The verifier a journal's stream metadata describes.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Result<Self, SigningError> {
        let signed_from = match metadata.get(META_SIGNED_FROM) {
            Some(s) => Some(s.parse().map_err(|_| SigningError::BadPublicKey(format!("{META_SIGNED_FROM}={s}")))?),
            None => None,
        };
        Ok(Verifier { keys: recorded_keys(metadata)?, signed_from })
    }

    /// This verifier with the keys replaced by `keys` (an auditor's pinned keys): the metadata's
    /// keys are not trusted, and without a signing record every message must be signed.
    pub fn pinned(self, keys: &[VerifyingKey]) -> Self {
        Verifier {
            keys: keys.iter().map(|k| (key_id(k), *k)).collect(),
            signed_from: Some(self.signed_from.unwrap_or(1)),
        }
    }

    /// True when messages are checked at all.
    pub fn is_on(&self) -> bool {
        self.signed_from.is_some()
    }

    /// Checks one stored message: `Ok` when it need not be signed or its signature verifies,
    /// else why not.
    pub fn check(
        &self,
        sequence: u64,
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        body: &[u8],
    ) -> Result<(), String> {
        let Some(from) = self.signed_from else {
            return Ok(());
        };
        if sequence < from {
            return Ok(());
        }
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        let (Some(signature), Some(id)) = (header(HEADER_SIGNATURE), header(HEADER_KEY_ID)) else {
            return Err(format!("not signed (every message from stream sequence {from} on must be)"));
        };
        let expected = match header(HEADER_EXPECTED_SEQUENCE) {
            Some(s) => Some(s.parse::<u64>().map_err(|_| format!("{HEADER_EXPECTED_SEQUENCE} {s:?} is no sequence"))?),
            None => None,
        };
        let key =
            self.keys.get(id).ok_or_else(|| format!("signed by unknown key {:?}", tgp_events::limits::quote(id)))?;
        verify(key, subject, expected, body, signature)
    }
}

/// Verifies one signature over [`signed_bytes`].
pub fn verify(
    key: &VerifyingKey,
    subject: &str,
    expected: Option<u64>,
    body: &[u8],
    signature: &str,
) -> Result<(), String> {
    let bytes: [u8; 64] = BASE64
        .decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "the signature is not base64 of 64 bytes".to_string())?;
    key.verify(&signed_bytes(subject, expected, body), &Signature::from_bytes(&bytes))
        .map_err(|_| format!("the signature does not verify (key {}, subject {subject})", key_id(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> JournalKey {
        JournalKey::from_seed([byte; 32])
    }

    fn verifier(keys: &[&JournalKey], from: u64) -> Verifier {
        let mut metadata = HashMap::new();
        for k in keys {
            metadata = with_key_recorded(&metadata, k, from).unwrap().unwrap_or(metadata);
        }
        Verifier::from_metadata(&metadata).unwrap()
    }

    #[test]
    fn the_signature_covers_the_exact_bytes() {
        assert_eq!(
            signed_bytes("tgp.events.instance.a", Some(7), b"{}"),
            b"tgp-journal-v1\ntgp.events.instance.a\n7\n{}"
        );
        assert_eq!(signed_bytes("tgp.events.controller", None, b"x"), b"tgp-journal-v1\ntgp.events.controller\n-\nx");
        let k = key(1);
        let public = k.key.verifying_key();
        let signature = k.sign("tgp.events.instance.a", Some(7), b"{}");
        assert!(verify(&public, "tgp.events.instance.a", Some(7), b"{}", &signature).is_ok());
        // Another subject (a replay onto another instance), another position, another body.
        for (subject, expected, body) in [
            ("tgp.events.instance.b", Some(7), &b"{}"[..]),
            ("tgp.events.instance.a", Some(8), b"{}"),
            ("tgp.events.instance.a", None, b"{}"),
            ("tgp.events.instance.a", Some(7), b"{ }"),
        ] {
            let err = verify(&public, subject, expected, body, &signature).unwrap_err();
            assert!(err.contains("does not verify"), "{err}");
        }
        assert!(verify(&public, "s", None, b"", "!!").unwrap_err().contains("not base64"));
    }

    #[test]
    fn unsigned_unknown_and_forged_are_refused_after_signed_from() {
        let (ours, theirs) = (key(1), key(2));
        let v = verifier(&[&ours], 10);
        let subject = "tgp.events.instance.a";
        let body = br#"{"forged":true}"#;
        assert!(v.check(9, subject, None, body).is_ok(), "before signing was switched on");
        assert!(v.check(10, subject, None, body).unwrap_err().contains("not signed"));
        let foreign = theirs.headers(subject, Some(3), body);
        assert!(v.check(10, subject, Some(&foreign), body).unwrap_err().contains("unknown key"));
        let good = ours.headers(subject, Some(3), body);
        assert!(v.check(10, subject, Some(&good), body).is_ok());
        assert!(v.check(10, "tgp.events.instance.b", Some(&good), body).unwrap_err().contains("does not verify"));
        // A journal that never had signing switched on checks nothing.
        assert!(Verifier::default().check(10, subject, None, body).is_ok());
        // Pinned: the metadata's keys are not trusted.
        let pinned = v.clone().pinned(&[theirs.key.verifying_key()]);
        assert!(pinned.check(10, subject, Some(&good), body).unwrap_err().contains("unknown key"));
        assert!(pinned.check(10, subject, Some(&foreign), body).is_ok());
    }

    #[test]
    fn rotation_keeps_old_keys_and_the_first_signed_from() {
        let (old, new) = (key(1), key(2));
        let first = with_key_recorded(&HashMap::new(), &old, 42).unwrap().unwrap();
        assert_eq!(first[META_SIGNED_FROM], "42");
        assert!(with_key_recorded(&first, &old, 99).unwrap().is_none(), "nothing to change");
        let rotated = with_key_recorded(&first, &new, 99).unwrap().unwrap();
        assert_eq!(rotated[META_SIGNED_FROM], "42");
        let keys = recorded_keys(&rotated).unwrap();
        assert!(keys.contains_key(old.id()) && keys.contains_key(new.id()), "{keys:?}");
    }

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.key");
        let made = JournalKey::create(&path).unwrap();
        assert_eq!(JournalKey::load(&path).unwrap().id(), made.id());
        assert!(matches!(JournalKey::create(&path), Err(SigningError::Exists(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = JournalKey::load(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }
}
