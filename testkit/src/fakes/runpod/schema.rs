//! What the RunPod fake's GraphQL schema knows: the fields of the types it serves and the fields
//! of their input types. A document asking for anything else is refused before it runs, with
//! the messages GraphQL servers give (`Cannot query field ...`, `Field ... is not defined by
//! type ...`); spot removal takes the spot mutation (and, further, the spot price fields) away.

use serde_json::Value;

use super::SpotSchema;
use super::parse::{Field, Kind};

const GPU_TYPE_FIELDS: &[&str] = &[
    "id",
    "displayName",
    "manufacturer",
    "memoryInGb",
    "maxGpuCount",
    "maxGpuCountSecureCloud",
    "maxGpuCountCommunityCloud",
    "minPodGpuCount",
    "secureCloud",
    "communityCloud",
    "securePrice",
    "communityPrice",
    "secureSpotPrice",
    "communitySpotPrice",
    "oneWeekPrice",
    "oneMonthPrice",
    "threeMonthPrice",
    "sixMonthPrice",
    "lowestPrice",
    "__typename",
];
const LOWEST_PRICE_FIELDS: &[&str] = &[
    "minimumBidPrice",
    "uninterruptablePrice",
    "minVcpu",
    "minMemory",
    "stockStatus",
    "availableGpuCounts",
    "maxUnreservedGpuCount",
    "gpuName",
    "gpuTypeId",
    "countryCode",
    "__typename",
];
const POD_FIELDS: &[&str] = &[
    "id",
    "name",
    "desiredStatus",
    "podType",
    "imageName",
    "gpuCount",
    "vcpuCount",
    "memoryInGb",
    "costPerHr",
    "adjustedCostPerHr",
    "containerDiskInGb",
    "volumeInGb",
    "volumeMountPath",
    "lastStatusChange",
    "uptimeSeconds",
    "machineId",
    "ports",
    "dockerArgs",
    "env",
    "lowestBidPriceToResume",
    "runtime",
    "machine",
    "__typename",
];
const DEPLOY_INPUT: &[&str] = &[
    "name",
    "imageName",
    "gpuTypeId",
    "gpuTypeIdList",
    "gpuCount",
    "cloudType",
    "dataCenterId",
    "countryCode",
    "containerDiskInGb",
    "volumeInGb",
    "volumeMountPath",
    "minVcpuCount",
    "minMemoryInGb",
    "minDisk",
    "minDownload",
    "minUpload",
    "supportPublicIp",
    "startSsh",
    "startJupyter",
    "ports",
    "dockerArgs",
    "env",
    "templateId",
    "networkVolumeId",
    "containerRegistryAuthId",
    "allowedCudaVersions",
    "minCudaVersion",
    "cudaVersion",
    "deployCost",
    "stopAfter",
    "terminateAfter",
    "volumeKey",
    "aiApiId",
    "port",
    "savingsPlan",
    "instanceIds",
    "computeType",
];
const LOWEST_INPUT: &[&str] = &[
    "gpuCount",
    "secureCloud",
    "dataCenterId",
    "countryCode",
    "minDisk",
    "minMemoryInGb",
    "minVcpuCount",
    "minDownload",
    "minUpload",
    "totalDisk",
    "supportPublicIp",
    "globalNetwork",
    "compliance",
    "cudaVersion",
    "allowedCudaVersions",
    "minCudaVersion",
    "includeAiApi",
];

fn check_selection(fields: &[Field], known: &[&str], removed: &[&str], type_name: &str) -> Result<(), String> {
    for f in fields {
        if !known.contains(&f.name.as_str()) || removed.contains(&f.name.as_str()) {
            return Err(format!("Cannot query field \"{}\" on type \"{type_name}\".", f.name));
        }
    }
    Ok(())
}

fn check_input(value: Option<&Value>, known: &[&str], type_name: &str) -> Result<(), String> {
    if let Some(Value::Object(map)) = value
        && let Some(k) = map.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(format!("Field \"{k}\" is not defined by type \"{type_name}\"."));
    }
    Ok(())
}

/// Validates the whole document before anything runs, as a GraphQL server does.
pub(crate) fn validate(kind: Kind, roots: &[Field], spot: SpotSchema) -> Result<(), String> {
    let spot_fields: &[&str] = if spot == SpotSchema::FieldsRemoved {
        &["secureSpotPrice", "communitySpotPrice", "minimumBidPrice"]
    } else {
        &[]
    };
    let spot_ops: &[&str] = if spot == SpotSchema::Live { &[] } else { &["podRentInterruptable", "podBidResume"] };
    for root in roots {
        let input = root.args.get("input");
        let (known, type_name): (&[&str], &str) = match kind {
            Kind::Query => (&["gpuTypes", "pod", "myself", "__typename"], "Query"),
            Kind::Mutation => (
                &[
                    "podFindAndDeployOnDemand",
                    "podRentInterruptable",
                    "podTerminate",
                    "podStop",
                    "podResume",
                    "podBidResume",
                ],
                "Mutation",
            ),
        };
        if !known.contains(&root.name.as_str()) || spot_ops.contains(&root.name.as_str()) {
            return Err(format!("Cannot query field \"{}\" on type \"{type_name}\".", root.name));
        }
        match root.name.as_str() {
            "gpuTypes" => {
                check_input(input, &["id", "ids", "cluster"], "GpuTypeFilter")?;
                check_selection(&root.selections, GPU_TYPE_FIELDS, spot_fields, "GpuType")?;
                for lp in root.selections.iter().filter(|f| f.name == "lowestPrice") {
                    check_input(lp.args.get("input"), LOWEST_INPUT, "GpuLowestPriceInput")?;
                    check_selection(&lp.selections, LOWEST_PRICE_FIELDS, spot_fields, "LowestPrice")?;
                }
            }
            "myself" => {
                check_selection(&root.selections, &["id", "pods", "__typename"], &[], "User")?;
                for pods in root.selections.iter().filter(|f| f.name == "pods") {
                    check_selection(&pods.selections, POD_FIELDS, &[], "Pod")?;
                }
            }
            "podTerminate" => check_input(input, &["podId", "incrementVersion"], "PodTerminateInput")?,
            name => {
                let (fields, input_type): (Vec<&str>, &str) = match name {
                    "pod" => (vec!["podId"], "PodFilter"),
                    "podStop" => (vec!["podId", "incrementVersion"], "PodStopInput"),
                    "podResume" => (vec!["podId", "gpuCount", "syncMachine", "computeType"], "PodResumeInput"),
                    "podBidResume" => (vec!["podId", "bidPerGpu", "gpuCount"], "PodBidResumeInput"),
                    "podRentInterruptable" => {
                        (DEPLOY_INPUT.iter().copied().chain(["bidPerGpu"]).collect(), "PodRentInterruptableInput")
                    }
                    _ => (DEPLOY_INPUT.to_vec(), "PodFindAndDeployOnDemandInput"),
                };
                check_input(input, &fields, input_type)?;
                if name != "__typename" {
                    check_selection(&root.selections, POD_FIELDS, &[], "Pod")?;
                }
            }
        }
    }
    Ok(())
}
