//! A terminate command as it arrives on `tgp.commands.terminate` or `tgp.api.terminate`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgp_events::TerminateCommand;
use tgp_events::limits::MAX_REFUSAL_BYTES;

fuzz_target!(|body: &[u8]| {
    if let Err(e) = TerminateCommand::from_json(body) {
        assert!(e.to_string().len() <= MAX_REFUSAL_BYTES, "a refusal fits a reply and a dead letter");
    }
});
