//! `tgp audit`, `tgp prices` and `tgp projections rebuild`: the reports, all folds of the journal.

use std::io::Write as _;
use std::path::PathBuf;

use crate::projections::cost::{CostLedger, parse_group_by};
use crate::projections::pricing::{MarketRow, PriceRow, RealizedPrices};
use crate::projections::runner;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use tgp_events::api::{CostReport, CostRow, ErrorReply};
use tgp_events::subjects::API_PRICES;

use super::{NatsArgs, parse_duration};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Range start by event time: RFC 3339 or an age (7d, 12h); default the journal's beginning.
    #[arg(long)]
    from: Option<String>,
    /// Range end (exclusive): RFC 3339 or an age; default now. Runs still open are billed to here.
    #[arg(long)]
    to: Option<String>,
    /// Group by any of provider, gpu, region, spot, instance, day (comma-separated).
    #[arg(long, default_value = "provider")]
    group_by: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also write an SVG chart of cumulative spend by provider here.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Allowance between an event's time and the time it was journaled (for --from).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    lag: std::time::Duration,
}

fn parse_time(text: &str, what: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = parse_duration(text).map_err(|e| anyhow::anyhow!("{what}: {e}, or an RFC 3339 time"))?;
    Ok(Utc::now() - chrono::Duration::from_std(age)?)
}

async fn js(nats: &NatsArgs) -> anyhow::Result<(async_nats::Client, async_nats::jetstream::Context)> {
    let client = nats.connect("tgp-audit").await?;
    Ok((client.clone(), crate::connect::jetstream(client)))
}

fn progress(done: u64, total: u64) {
    if total > 0 {
        eprint!("\rreplaying the journal: {done}/{total} commits ({:.0}%)", 100.0 * done as f64 / total as f64);
        if done >= total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    }
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let group_by = parse_group_by(std::slice::from_ref(&args.group_by)).map_err(anyhow::Error::msg)?;
    let from = args.from.as_deref().map(|t| parse_time(t, "--from")).transpose()?;
    let to = args.to.as_deref().map(|t| parse_time(t, "--to")).transpose()?.unwrap_or_else(Utc::now);
    anyhow::ensure!(from.is_none_or(|f| f < to), "--from must be before --to");
    let (_, js) = js(&args.nats).await?;
    let lag = chrono::Duration::from_std(args.lag)?;
    let crate::audit::Replayed { ledger, quarantined } = crate::audit::replay(&js, from, lag, progress).await?;
    let report = ledger.state.report(from, to, &group_by, ledger.last_sequence);
    print_report(&report, args.format)?;
    if matches!(args.format, Format::Table) {
        println!("quarantined: {quarantined} journal message(s) skipped, not counted (`tgp journal check` lists them)");
    } else if quarantined > 0 {
        eprintln!(
            "warning: {quarantined} journal message(s) quarantined and not counted (`tgp journal check` lists them)"
        );
    }
    if let Some(path) = &args.chart {
        let start = from.or_else(|| ledger.state.runs().map(|r| r.start).min()).unwrap_or(to);
        let series = ledger.state.spend_series(start, to, crate::chart::bucket_for(start, to));
        std::fs::write(path, crate::chart::spend_svg(&series, start, to))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}

fn key(row: &CostRow, report: &CostReport) -> Vec<String> {
    report
        .group_by
        .iter()
        .map(|g| match g.as_str() {
            "provider" => row.provider.clone(),
            "gpu" => row.gpu.clone(),
            "region" => row.region.clone(),
            "spot" => row.spot.clone(),
            "instance" => row.instance.clone(),
            _ => row.day.clone(),
        })
        .map(|v| v.unwrap_or_else(|| "*".into()))
        .collect()
}

/// Prints a report as a table, CSV or JSON.
pub fn print_report(report: &CostReport, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(report)?),
        Format::Csv => {
            println!("{},hours,cost,on_demand_cost,savings,runs", report.group_by.join(","));
            for row in report.rows.iter().chain(std::iter::once(&report.total)) {
                let mut fields = key(row, report);
                if std::ptr::eq(row, &report.total) {
                    fields = vec!["TOTAL".into(); report.group_by.len().max(1)];
                }
                println!(
                    "{},{},{},{},{},{}",
                    fields.join(","),
                    row.hours,
                    row.cost.as_decimal(),
                    row.on_demand_cost.as_decimal(),
                    row.savings.as_decimal(),
                    row.runs
                );
            }
        }
        Format::Table => {
            let header: Vec<String> = report.group_by.iter().map(|g| g.to_uppercase()).collect();
            let width = 18;
            println!(
                "{}{:>12} {:>12} {:>14} {:>12}",
                header.iter().map(|h| format!("{h:<width$}")).collect::<String>(),
                "HOURS",
                "COST",
                "ON-DEMAND",
                "SAVED"
            );
            for row in &report.rows {
                println!(
                    "{}{:>12} {:>12} {:>14} {:>12}",
                    key(row, report).iter().map(|k| format!("{k:<width$}")).collect::<String>(),
                    row.hours,
                    row.cost.to_string(),
                    row.on_demand_cost.to_string(),
                    row.savings.to_string()
                );
            }
            let label = format!("{:<w$}", "TOTAL", w = width * report.group_by.len().max(1));
            println!(
                "{label}{:>12} {:>12} {:>14} {:>12}",
                report.total.hours,
                report.total.cost.to_string(),
                report.total.on_demand_cost.to_string(),
                report.total.savings.to_string()
            );
            println!(
                "range: {} to {} (journal up to stream sequence {})",
                report.from.map_or("the beginning".to_string(), |f| f.to_rfc3339()),
                report.to.to_rfc3339(),
                report.last_sequence
            );
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct PricesArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Only this GPU type.
    #[arg(long)]
    gpu: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn prices(args: PricesArgs) -> anyhow::Result<()> {
    let (client, _) = js(&args.nats).await?;
    let body = serde_json::json!({"gpu": args.gpu}).to_string();
    let reply = client.request(API_PRICES, body.into()).await.context("no controller answers on tgp.api.prices")?;
    if let Ok(e) = serde_json::from_slice::<ErrorReply>(&reply.payload) {
        anyhow::bail!("{} ({})", e.error.message, e.error.code);
    }
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Reply {
        prices: Vec<PriceRow>,
        market: Vec<MarketRow>,
    }
    let reply: Reply = serde_json::from_slice(&reply.payload)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(());
    }
    println!("market (per GPU-hour, as the providers last offered):");
    println!(
        "{:<12} {:<16} {:<18} {:<10} {:>6} {:>10} {:>10}",
        "PROVIDER", "GPU", "REGION", "KIND", "OFFERS", "MIN", "MEDIAN"
    );
    for r in &reply.market {
        println!(
            "{:<12} {:<16} {:<18} {:<10} {:>6} {:>10} {:>10}",
            r.key.provider,
            r.key.gpu,
            r.key.region,
            if r.key.spot { "spot" } else { "on-demand" },
            r.count,
            r.min.to_string(),
            r.median.to_string()
        );
    }
    println!();
    println!(
        "{:<12} {:<10} {:<12} {:<10} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "PROVIDER", "GPU", "REGION", "KIND", "COUNT", "MIN", "MEDIAN", "MAX", "LAST"
    );
    for r in &reply.prices {
        println!(
            "{:<12} {:<10} {:<12} {:<10} {:>6} {:>10} {:>10} {:>10} {:>10}",
            r.key.provider,
            r.key.gpu,
            r.key.region,
            if r.key.spot { "spot" } else { "on-demand" },
            r.count,
            r.min.to_string(),
            r.median.to_string(),
            r.max.to_string(),
            r.last.to_string()
        );
    }
    println!("prices actually paid, per machine-hour ({} rows)", reply.prices.len());
    Ok(())
}

#[derive(Args)]
pub struct ProjectionsArgs {
    #[command(subcommand)]
    action: ProjectionsAction,
}

#[derive(Subcommand)]
enum ProjectionsAction {
    /// Fold the whole journal again from its first commit and save the result as the checkpoint.
    Rebuild {
        #[command(flatten)]
        nats: NatsArgs,
        /// `cost` or `pricing`.
        name: String,
    },
}

pub async fn projections(args: ProjectionsArgs) -> anyhow::Result<()> {
    let ProjectionsAction::Rebuild { nats, name } = args.action;
    let (_, js) = js(&nats).await?;
    match name.as_str() {
        "cost" => {
            let rebuilt = runner::rebuild::<CostLedger>(&js, progress).await?;
            let report = rebuilt.state.report(None, Utc::now(), &[], rebuilt.last_sequence);
            println!(
                "cost rebuilt to stream sequence {}: total {} over {} hours",
                rebuilt.last_sequence, report.total.cost, report.total.hours
            );
        }
        "pricing" => {
            let rebuilt = runner::rebuild::<RealizedPrices>(&js, progress).await?;
            println!(
                "pricing rebuilt to stream sequence {}: {} price rows",
                rebuilt.last_sequence,
                rebuilt.state.rows(None).len()
            );
        }
        other => anyhow::bail!("no projection {other:?}; the projections are cost and pricing"),
    }
    Ok(())
}
