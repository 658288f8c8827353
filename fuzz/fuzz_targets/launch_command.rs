//! A launch command as it arrives on `tgp.commands.launch` or `tgp.api.launch`: any bytes are
//! either a valid command or a refusal whose reason fits a dead letter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgp_events::LaunchCommand;
use tgp_events::limits::MAX_REFUSAL_BYTES;

fuzz_target!(|body: &[u8]| {
    match LaunchCommand::from_json(body) {
        Ok(command) => {
            // What was accepted survives its own round trip.
            let again = serde_json::to_vec(&command).expect("an accepted command serializes");
            LaunchCommand::from_json(&again).expect("an accepted command is accepted again");
        }
        Err(e) => assert!(e.to_string().len() <= MAX_REFUSAL_BYTES, "a refusal fits a reply and a dead letter"),
    }
});
