//! Paperspace's answers as the client reads them: machine pages, one machine, mutations, errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgp::providers::paperspace::wire::{
    Machine, MachineMutation, Page, map_state, parse_error_body, split_label, wants_nvlink,
};

fuzz_target!(|body: &[u8]| {
    let _ = parse_error_body(body);
    if let Ok(page) = serde_json::from_slice::<Page<Machine>>(body) {
        for machine in page.items.into_list("items").unwrap_or_default() {
            let _ = map_state(&machine.state);
            let _ = split_label(&machine.machine_type);
            let _ = wants_nvlink(&machine.machine_type);
        }
    }
    let _ = serde_json::from_slice::<Machine>(body);
    let _ = serde_json::from_slice::<MachineMutation>(body);
});
