//! The GraphQL side of the RunPod client: only what REST v2 lacks (spot prices, the minimum bid,
//! renting a spot pod), while RunPod still serves it. Documents use variables (never
//! interpolated text); the key goes in the `Authorization: Bearer` header as every maintained
//! client sends it. Errors inside HTTP 200 are errors. A retired endpoint (410) or a document the
//! schema no longer accepts (a validation error naming a vanished field or mutation) turns spot
//! off for the client, reported once as [`ApiChangeKind::OperationGone`].

use std::sync::atomic::Ordering;

use reqwest::Method;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tgp_actors::provider::ProviderError;
use tgp_events::events::FailureClass;

use super::RunPodClient;
use super::wire::{GqlEnvelope, decimal_opt};
use crate::providers::api_change::ApiChangeKind;

/// Global spot prices per GPU type (per GPU per hour).
pub const SPOT_PRICES: &str = "query SpotPrices { gpuTypes { id secureSpotPrice communitySpotPrice } }";

/// The lowest acceptable bid per GPU for one GPU type, count and place.
pub const MINIMUM_BID: &str = "query MinimumBid($gpuTypesInput: GpuTypeFilter, $lowestPriceInput: GpuLowestPriceInput) { gpuTypes(input: $gpuTypesInput) { id lowestPrice(input: $lowestPriceInput) { minimumBidPrice stockStatus } } }";

/// Rents a spot pod; `bidPerGpu` is per GPU.
pub const RENT_SPOT: &str = "mutation RentSpot($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) { id desiredStatus costPerHr machineId } }";

/// `data` of [`SPOT_PRICES`] and [`MINIMUM_BID`].
#[derive(Debug, Deserialize)]
pub struct GpuTypesData {
    /// The GPU types.
    #[serde(rename = "gpuTypes")]
    pub gpu_types: Vec<GqlGpuType>,
}

/// One `GpuType`, the fields tgp selects.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GqlGpuType {
    /// The `gpuTypeId`.
    pub id: String,
    /// Secure-cloud spot price per GPU; null or 0 means none.
    #[serde(default, deserialize_with = "decimal_opt")]
    pub secure_spot_price: Option<Decimal>,
    /// Community-cloud spot price per GPU; null or 0 means none.
    #[serde(default, deserialize_with = "decimal_opt")]
    pub community_spot_price: Option<Decimal>,
    /// The cheapest placement for the asked input.
    #[serde(default)]
    pub lowest_price: Option<LowestPrice>,
}

/// `lowestPrice` of a `GpuType`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LowestPrice {
    /// Lowest acceptable spot bid per GPU; null when there is no spot capacity.
    #[serde(default, deserialize_with = "decimal_opt")]
    pub minimum_bid_price: Option<Decimal>,
    /// `High|Medium|Low|None` or null.
    #[serde(default)]
    pub stock_status: Option<String>,
}

/// `data` of [`RENT_SPOT`].
#[derive(Debug, Deserialize)]
pub struct RentData {
    /// The new pod.
    #[serde(rename = "podRentInterruptable")]
    pub pod: Option<RentedPod>,
}

/// The rented pod.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RentedPod {
    /// Pod id.
    pub id: String,
    /// What it bills per hour (bid × GPUs).
    #[serde(default, deserialize_with = "decimal_opt")]
    pub cost_per_hr: Option<Decimal>,
}

/// A document the server's schema refused: the field or mutation named is gone.
pub fn is_validation(message: &str) -> bool {
    ["Cannot query field", "is not defined by type", "Unknown argument", "Unknown type"]
        .iter()
        .any(|p| message.contains(p))
}

/// The class of a GraphQL error by its message (and code where one is given; clients must not
/// depend on it). Capacity arrives in several wordings; a bid under the market is capacity at
/// that price.
pub fn classify(message: &str, code: Option<&str>) -> FailureClass {
    let m = message.to_ascii_lowercase();
    let has = |p: &str| m.contains(p);
    if has("instances available")
        || has("not enough free gpus")
        || (has("bid") && (has("below") || has("too low") || has("outbid")))
    {
        FailureClass::Capacity
    } else if is_validation(message) {
        FailureClass::ContractChanged
    } else if has("not found") || code == Some("POD_NOT_FOUND") {
        FailureClass::NotFound
    } else if has("unauthorized") || has("api key") || matches!(code, Some("UNAUTHENTICATED" | "FORBIDDEN")) {
        FailureClass::Auth
    } else if has("too many requests") || has("rate limit") {
        FailureClass::RateLimited
    } else if has("something went wrong") || code == Some("INTERNAL_SERVER_ERROR") {
        FailureClass::ProviderOutage
    } else {
        FailureClass::InvalidRequest
    }
}

impl RunPodClient {
    /// Sends one GraphQL operation and decodes its `data`, or the error in the shared taxonomy.
    pub(super) async fn graphql<T: DeserializeOwned>(
        &self,
        operation: &str,
        query: &str,
        variables: serde_json::Value,
    ) -> Result<T, ProviderError> {
        let endpoint = format!("POST /graphql {operation}");
        let body = serde_json::json!({ "query": query, "variables": variables });
        let request = self.graphql.request(Method::POST, "/graphql").json(&body);
        let answer = match self.graphql.send(&endpoint, request).await {
            Ok(answer) => answer,
            // From `send`, only 410 Gone is a contract change: the operation was retired.
            Err(e) if e.class == FailureClass::ContractChanged => {
                return Err(self.spot_gone(&endpoint, &e.message, true));
            }
            Err(e) if is_validation(&e.message) => {
                return Err(self.spot_gone(&endpoint, &e.message, true));
            }
            Err(e) => return Err(e),
        };
        let envelope: GqlEnvelope = self.graphql.decode(&endpoint, &answer.body)?;
        if let Some(first) = envelope.errors.first() {
            if is_validation(&first.message) {
                return Err(self.spot_gone(&endpoint, &first.message, true));
            }
            let code = first.extensions.as_ref().and_then(|x| x.code.clone());
            let mut error = ProviderError::new(
                &self.name,
                classify(&first.message, code.as_deref()),
                format!("{endpoint}: {}", first.message),
            );
            error.code = code;
            return Err(error);
        }
        let Some(data) = envelope.data else {
            return Err(ProviderError::new(
                &self.name,
                FailureClass::ContractChanged,
                format!("{endpoint}: neither data nor errors in the answer"),
            ));
        };
        self.graphql.decode(&endpoint, data.get().as_bytes())
    }

    /// Turns spot off (reporting it once) and says why.
    fn spot_gone(&self, endpoint: &str, why: &str, report: bool) -> ProviderError {
        if self.spot.swap(false, Ordering::SeqCst) && report {
            self.graphql.report(endpoint, ApiChangeKind::OperationGone(why.to_string()));
        }
        ProviderError::new(
            &self.name,
            FailureClass::InvalidRequest,
            format!("RunPod no longer serves spot pods ({why}); spot is off for this client, launch on demand"),
        )
    }
}
