//! Vast.ai's answers as the client reads them: offers, instance pages, one instance, errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgp::providers::vastai::wire::{
    InstancePage, OffersAnswer, OneInstance, decimal_of, host_port, machine_status, parse_error,
};

fuzz_target!(|body: &[u8]| {
    let _ = parse_error(body);
    let _ = serde_json::from_slice::<OffersAnswer>(body);
    if let Ok(page) = serde_json::from_slice::<InstancePage>(body) {
        for instance in page.instances.into_list("instances").unwrap_or_default() {
            let _ = machine_status(&instance);
        }
    }
    if let Ok(OneInstance { instances: Some(instance) }) = serde_json::from_slice::<OneInstance>(body) {
        let _ = machine_status(&instance);
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = decimal_of(&value);
        let _ = host_port(Some(&value), 22);
    }
});
