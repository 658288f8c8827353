//! One-line descriptions of lifecycle events, for `tgp launch`, `tgp watch` and `tgp-dev demo`.

use tgp_events::events::InstanceEvent as E;

/// A line a person can read: what happened, with the facts that matter.
pub fn describe(event: &E) -> String {
    match event {
        E::LaunchRequested { request, .. } => format!(
            "launch requested: {}x {} at most {} per GPU-hour, {}",
            request.gpu_count, request.gpu_type, request.max_hourly_price, request.spot_policy
        ),
        E::OfferSelected { offer, reason, candidates, .. } => format!(
            "offer selected: {} {} ({} candidates considered; {reason})",
            offer.provider,
            offer.offer_id,
            candidates.len()
        ),
        E::LaunchAttempted { attempt_id, provider, .. } => format!("launching at {provider} as {attempt_id}"),
        E::Launched { provider, provider_instance_id, hourly_price, spot, adopted, .. } => format!(
            "launched {provider_instance_id} at {provider}, {hourly_price}/h {}{}",
            if *spot { "spot" } else { "on-demand" },
            if *adopted { " (adopted after restart)" } else { "" }
        ),
        E::Running { provider_instance_id, connection, .. } => format!(
            "running {provider_instance_id}: {}",
            connection.ssh_command().unwrap_or_else(|| "no SSH address reported".into())
        ),
        E::LaunchFailed { class, message, .. } => format!("launch failed ({class:?}): {message}"),
        E::Interrupted { provider_instance_id, reason, raw_status, .. } => {
            format!("interrupted {provider_instance_id}: {reason:?} (provider said {raw_status:?})")
        }
        E::Relaunched { provider_instance_id, replaces, hourly_price, spot, .. } => format!(
            "relaunched as {provider_instance_id} replacing {replaces}, {hourly_price}/h {}",
            if *spot { "spot" } else { "on-demand" }
        ),
        E::TerminationRequested { reason, .. } => format!("termination requested: {reason}"),
        E::Terminated { provider_instance_id, .. } => match provider_instance_id {
            Some(m) => format!("terminated {m}"),
            None => "terminated (nothing was running)".into(),
        },
        E::Failed { reason, .. } => format!("failed: {reason}"),
        E::Reappeared { provider_instance_id, raw_status, replaced_by, .. } => format!(
            "{provider_instance_id} reappeared (provider said {raw_status:?}) and is kept{}",
            replaced_by.as_ref().map(|r| format!("; its replacement {r} is given up")).unwrap_or_default()
        ),
        E::WaitingForCapacity { reason, until, .. } => {
            format!("waiting for capacity until {}: {reason}", until.format("%Y-%m-%d %H:%M:%S UTC"))
        }
        E::OrphanTerminated { provider, provider_instance_id, attempt_id, raw_status, .. } => {
            format!("orphan {provider_instance_id} ({attempt_id}, {raw_status}) found at {provider} and terminated")
        }
    }
}
