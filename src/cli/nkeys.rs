//! `tgp nkeys`: fresh nkeys for the roles of `nats.conf`, for development (`scripts/dev-creds`) or
//! for a first deployment, made with the same code that gives each private server its own.

use std::path::PathBuf;

use crate::nats_server::{Role, write_role_nkeys};
use clap::Args;

#[derive(Args)]
pub struct NkeysArgs {
    /// The folder to write into: `<role>.nk` (each role's seed, readable by its owner only) and
    /// `nkeys.conf` (the public keys, which `nats.conf` includes).
    #[arg(long, default_value = "nkeys")]
    out: PathBuf,
    /// Replace the nkeys already in the folder (every holder of an old seed is locked out once the
    /// server reloads).
    #[arg(long)]
    force: bool,
}

/// Writes the nkeys and says where each role's seed is.
pub fn nkeys(args: NkeysArgs) -> anyhow::Result<()> {
    let conf = args.out.join("nkeys.conf");
    anyhow::ensure!(
        args.force || !conf.exists(),
        "{} exists: pass --force to replace its nkeys (see docs/security.md, rotating)",
        conf.display()
    );
    let conf = write_role_nkeys(&args.out)?;
    println!("wrote {} (the public keys nats.conf includes)", conf.display());
    for role in Role::ALL {
        println!("  {:<8} seed: {}", role.name(), args.out.join(format!("{}.nk", role.name())).display());
    }
    Ok(())
}
