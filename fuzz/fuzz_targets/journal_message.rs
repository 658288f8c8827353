//! A message on `tgp.events.>` as every reader checks it before use (the commit envelope, then
//! each event in it): any bytes are a commit, or a refusal that quarantines them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgp::journal::quarantine::{check_commit, check_message};

fuzz_target!(|body: &[u8]| {
    let _ = check_message("tgp.events.provider.vastai", body);
    let _ = check_message("tgp.events.controller", body);
    if let Ok(commit) = check_commit("tgp.events.instance.fuzz-1", body) {
        assert!(!commit.events.is_empty(), "a commit holds at least one event");
        for record in &commit.events {
            let _ = record.decode();
        }
    }
});
