//! RunPod's answers as the client reads them: the pod list, the GPU catalog, GraphQL envelopes,
//! errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgp::providers::runpod::wire::{CatalogGpus, GqlEnvelope, Pod, parse_error, parse_pod_list, pod_instance};

fuzz_target!(|body: &[u8]| {
    let _ = parse_error(body);
    let _ = parse_pod_list(body);
    let _ = serde_json::from_slice::<CatalogGpus>(body);
    let _ = serde_json::from_slice::<GqlEnvelope>(body);
    if let Ok(pod) = serde_json::from_slice::<Pod>(body) {
        let _ = pod_instance(&pod);
    }
});
