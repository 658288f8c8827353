//! The secrets key files (`tgp secrets keygen`, `tgp run --secrets-key`), and what keeps env
//! values out of dead letters. The sealing itself is pure and lives in `tgp_actors::keyring`.
//!
//! A key file holds one line: the 32-byte key in base64. It must be readable by its owner only
//! (mode 0600 or stricter): a group- or world-readable key is refused, since anyone who reads it
//! can open every env value in the journal.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::Value;
use tgp_actors::keyring::{KEY_BYTES, Keyring, SecretKey};

/// Why a key file cannot be used or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read or written.
    #[error("secrets key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Others than its owner may read it.
    #[error("secrets key {path} is readable by others (mode {mode:o}): run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It does not hold a key.
    #[error("secrets key {path} does not hold a key (one line: 32 bytes in base64, as `tgp secrets keygen` writes)")]
    NotAKey {
        /// The file.
        path: PathBuf,
    },
    /// `keygen` would overwrite a file.
    #[error("{path} exists; tgp secrets keygen never overwrites a key (journaled values would no longer open)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io { path: path.into(), source }
}

/// Reads one key file, refusing one that others may read.
pub fn read_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed { path: path.into(), mode });
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bytes = STANDARD.decode(text.trim()).map_err(|_| KeyFileError::NotAKey { path: path.into() })?;
    let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| KeyFileError::NotAKey { path: path.into() })?;
    Ok(SecretKey::from_bytes(&bytes))
}

/// The key ring of `paths`, in order: the first seals, all open.
pub fn keyring(paths: &[PathBuf]) -> Result<Keyring, KeyFileError> {
    Ok(Keyring::new(paths.iter().map(|p| read_key(p)).collect::<Result<_, _>>()?))
}

/// Writes a new random key to `path` (mode 0600), refusing to overwrite; returns its id.
pub fn keygen(path: &Path) -> Result<String, KeyFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = SecretKey::generate();
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists { path: path.into() }
        } else {
            KeyFileError::Io { path: path.into(), source: e }
        }
    })?;
    writeln!(file, "{}", STANDARD.encode(bytes)).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(SecretKey::from_bytes(&bytes).id().to_string())
}

/// A refused launch's body as a dead letter keeps it: every `env` value replaced by
/// `"(redacted)"`, names kept. A body that is not a JSON object cannot be read for its env, so
/// it is replaced by a note with its size, unless it cannot hold `env` at all.
pub fn redact_launch_body(body: &Bytes) -> Bytes {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut command)) => {
            match command.get_mut("env") {
                Some(Value::Object(env)) => env.values_mut().for_each(|v| *v = Value::from("(redacted)")),
                Some(other) => *other = Value::from("(redacted)"),
                None => return body.clone(),
            }
            Bytes::from(serde_json::to_vec(&command).expect("JSON serializes"))
        }
        Ok(_) => body.clone(),
        Err(_) if !body.windows(3).any(|w| w.eq_ignore_ascii_case(b"env")) => body.clone(),
        Err(_) => Bytes::from(
            serde_json::json!({"redacted": format!("{} bytes that are not JSON and may hold env values", body.len())})
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_key_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let id = keygen(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_key(&path).unwrap().id(), id);
        assert!(matches!(keygen(&path), Err(KeyFileError::Exists { .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_key(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Exposed { .. }) && err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn dead_letters_keep_env_names_not_values() {
        let body = Bytes::from(r#"{"gpu_type":"H100","env":{"HF_TOKEN":"hf_secret"},"budget":"x"}"#);
        let kept = String::from_utf8(redact_launch_body(&body).to_vec()).unwrap();
        assert!(kept.contains("HF_TOKEN") && kept.contains("(redacted)") && !kept.contains("hf_secret"), "{kept}");
        let broken = Bytes::from(r#"{"env":{"HF_TOKEN":"hf_secret"},"#);
        assert!(!String::from_utf8_lossy(&redact_launch_body(&broken)).contains("hf_secret"));
        let plain = Bytes::from(r#"{"gpu_type":"H100"}"#);
        assert_eq!(redact_launch_body(&plain), plain);
    }
}
