//! Lambda Cloud's answers as the client reads them: instances, instance types, launch and
//! terminate answers, errors.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tgp::providers::lambda::wire::{
    Envelope, Instance, InstanceTypeEntry, LaunchAnswer, ListEnvelope, TerminateAnswer, parse_error,
};

fuzz_target!(|body: &[u8]| {
    if let Some((Some(code), _)) = parse_error(body) {
        let _ = tgp::providers::lambda::wire::class_for_code(&code);
    }
    if let Ok(list) = serde_json::from_slice::<ListEnvelope<Instance>>(body) {
        let _ = list.data.into_list("data");
    }
    let _ = serde_json::from_slice::<Envelope<Instance>>(body);
    let _ = serde_json::from_slice::<Envelope<BTreeMap<String, InstanceTypeEntry>>>(body);
    let _ = serde_json::from_slice::<Envelope<LaunchAnswer>>(body);
    let _ = serde_json::from_slice::<Envelope<TerminateAnswer>>(body);
});
