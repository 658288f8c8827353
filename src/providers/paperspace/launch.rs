//! What a launch asks for, checked against what Paperspace can take, before anything is called.
//!
//! Paperspace machines are VMs booted from an OS template; they do not run a container image.
//! So the launch `image` chooses the OS, and anything else is refused as `invalid_request`
//! before any money is spent:
//! - `ubuntu:<version>` (tgp's default `ubuntu:22.04`): a plain machine of that Ubuntu version,
//!   booted from the configured `template_id`, or the default template lookup;
//! - `paperspace-template:<id>`: boot that template (`t…`) as is.
//!
//! The API has no environment or SSH-key field either. Both go into a run-once startup script
//! (the way SkyPilot passes its key): the key is appended to the `paperspace` user's
//! `authorized_keys`; the environment is written to `/etc/profile.d/tgp-env.sh` (login shells,
//! including SSH sessions, read it) and `/etc/environment`.

use std::collections::BTreeMap;

use tgp_events::sealed::Secret;

use tgp_actors::provider::LaunchSpec;

/// The login user of Paperspace's Linux templates.
pub const SSH_USER: &str = "paperspace";

/// Image prefix naming a Paperspace template.
pub const TEMPLATE_IMAGE_PREFIX: &str = "paperspace-template:";

/// What the launch image means on Paperspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OsChoice {
    /// Plain Ubuntu of this version (`22.04`): the configured or looked-up template.
    Ubuntu(String),
    /// This template id.
    Template(String),
}

/// Reads the image, or says why Paperspace cannot take it.
pub fn os_choice(image: &str) -> Result<OsChoice, String> {
    let image = image.trim();
    if let Some(id) = image.strip_prefix(TEMPLATE_IMAGE_PREFIX) {
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(OsChoice::Template(id.to_string()));
        }
        return Err(format!("{image:?} does not name a template id (e.g. paperspace-template:tiq8mhti)"));
    }
    if let Some(version) = image.strip_prefix("ubuntu:") {
        let ok = version.split('.').count() == 2
            && version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if ok {
            return Ok(OsChoice::Ubuntu(version.to_string()));
        }
    }
    Err(format!(
        "Paperspace machines are VMs booted from an OS template and cannot run the container \
         image {image:?}; use ubuntu:<version> (e.g. ubuntu:22.04) or {TEMPLATE_IMAGE_PREFIX}<template id>"
    ))
}

/// The first-boot script carrying the SSH key and environment; `None` when there is neither.
pub fn startup_script(spec: &LaunchSpec) -> Result<Option<String>, String> {
    let key = match spec.ssh_public_key.as_deref().map(str::trim) {
        Some("") => None,
        Some(k) if k.contains(['\n', '\r', '\'']) || !k.starts_with("ssh-") && !k.starts_with("ecdsa-") => {
            return Err("the SSH public key must be one line in OpenSSH format (ssh-ed25519 AAAA...)".into());
        }
        other => other,
    };
    check_env(&spec.env)?;
    if key.is_none() && spec.env.is_empty() {
        return Ok(None);
    }
    let mut script = String::from("#!/bin/bash\n# written by tgp for ");
    script.push_str(spec.attempt_id.as_str());
    script.push('\n');
    if let Some(key) = key {
        script.push_str(&format!(
            "install -d -m 700 -o {SSH_USER} -g {SSH_USER} /home/{SSH_USER}/.ssh\n\
             echo '{key}' >> /home/{SSH_USER}/.ssh/authorized_keys\n\
             chown {SSH_USER}:{SSH_USER} /home/{SSH_USER}/.ssh/authorized_keys\n\
             chmod 600 /home/{SSH_USER}/.ssh/authorized_keys\n"
        ));
    }
    if !spec.env.is_empty() {
        script.push_str("cat > /etc/profile.d/tgp-env.sh <<'TGP_ENV_EOF'\n");
        for (k, v) in &spec.env {
            script.push_str(&format!("export {k}={}\n", shell_quote(v.expose())));
        }
        script.push_str("TGP_ENV_EOF\n");
        for (k, v) in &spec.env {
            script.push_str(&format!("echo {} >> /etc/environment\n", shell_quote(&format!("{k}=\"{}\"", v.expose()))));
        }
    }
    Ok(Some(script))
}

/// Names must be shell identifiers; values one line without `"` (what `/etc/environment` holds).
fn check_env(env: &BTreeMap<String, Secret>) -> Result<(), String> {
    for (k, v) in env {
        let mut chars = k.chars();
        let ident = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            return Err(format!("environment variable name {k:?} is not a shell identifier"));
        }
        if v.expose().contains(['\n', '\r', '"', '\0']) {
            return Err(format!(
                "environment variable {k}: a value may not hold newlines or double quotes on Paperspace"
            ));
        }
    }
    Ok(())
}

/// Single-quotes a value for the shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::{OsChoice, os_choice, shell_quote};

    #[test]
    fn images_choose_the_os_or_are_refused() {
        assert_eq!(os_choice("ubuntu:22.04"), Ok(OsChoice::Ubuntu("22.04".into())));
        assert_eq!(os_choice("paperspace-template:tiq8mhti"), Ok(OsChoice::Template("tiq8mhti".into())));
        assert!(os_choice("pytorch/pytorch:2.3").unwrap_err().contains("container image"));
        assert!(os_choice("ubuntu:latest").is_err());
        assert!(os_choice("paperspace-template:").is_err());
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
