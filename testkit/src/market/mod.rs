//! The in-memory market: one provider behind the `ProviderClient` trait, with a seeded
//! [`catalog`], [`machine`]s that boot and are preempted on a [`misfortune`] schedule, on a
//! [`Clock`], and cues ([`MarketCue`]) that change how it behaves from now on. It is documented as
//! simulated everywhere it appears (provider names `simulated` and `sim-*`, addresses from the
//! TEST-NET-3 documentation range).
//!
//! Two uses, one market:
//! - `tgp-dev run --market simulated` and many tests ([`Market::simulated`]): the wall clock, a
//!   [`Chaos::quiet`] schedule, and optionally a state file, so machines survive a restart of tgp
//!   and tests can kill the controller mid-flight and check exactly the machines the journal
//!   accounts for remain;
//! - `tgp-dev sim` ([`Market::new`]): the virtual clock, every misfortune on, and a log of every
//!   call and of every machine a terminate call reached: the market's truth, which the checks
//!   hold the journal against.

mod answers;
pub mod catalog;
pub mod machine;
pub mod misfortune;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tgp_actors::clock::Clock;
use tgp_events::ProviderName;

pub use catalog::Catalog;
pub use machine::{Machine, Truth};
pub use misfortune::{Chances, Chaos, rng_for};

/// The name of `tgp-dev run`'s simulated market.
pub const SIMULATED: &str = "simulated";

/// How `tgp-dev run`'s simulated market behaves.
#[derive(Clone, Debug)]
pub struct SimulatedConfig {
    /// Seeds offers, prices and spot lives: the same seed gives the same market.
    pub seed: u64,
    /// How long a machine takes from launch to running.
    pub boot_time: Duration,
    /// Mean time a spot machine runs before it is preempted; `None` for never (cues still can).
    pub mean_spot_life: Option<Duration>,
    /// Where machines are kept across restarts, and shared by the `tgp-dev run` processes of one
    /// journal (each change reads it first: a standby that takes over sees its leader's machines);
    /// `None` keeps them in memory only.
    pub state_file: Option<PathBuf>,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig { seed: 1, boot_time: Duration::from_secs(2), mean_spot_life: None, state_file: None }
    }
}

/// A change to how the market behaves from now on, for tests and demonstrations
/// (`tgp.sim.cue`). Each field left out changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketCue {
    /// Refuse the next N launches for lack of capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_launches: Option<u32>,
    /// Start the next N launched machines but lose the answers (as a timeout would).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lose_launch_answers: Option<u32>,
    /// Offer spot capacity (`true`) or withdraw it everywhere (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot: Option<bool>,
}

/// Machines, counters and cues: what the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MarketState {
    /// Every machine ever launched, by id; terminated ones stay, marked.
    pub machines: BTreeMap<String, Machine>,
    /// Launch calls received (for tests: a launch must never be sent twice for one attempt).
    pub launch_calls: u64,
    /// The number of the last machine numbered ([`MachineIds::Numbered`]).
    #[serde(default)]
    pub next_id: u64,
    /// Launches still to refuse for lack of capacity (set on cue).
    #[serde(default)]
    pub refuse_launches: u32,
    /// Launches still to start whose answer is then lost (set on cue).
    #[serde(default)]
    pub lose_launch_answers: u32,
    /// Spot capacity withdrawn: no spot prices offered, spot launches refused (set on cue).
    #[serde(default)]
    pub spot_withdrawn: bool,
}

impl MarketState {
    /// Reads a state file written by a market (for tests and benchmarks that inspect or change a
    /// controller's market from outside).
    pub fn read(path: &Path) -> Result<Self, std::io::Error> {
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }

    /// Writes it through a temporary file of this process and a rename, so a reader (or a crash)
    /// never sees half a file, and two processes writing at once never mix theirs.
    pub fn write(&self, path: &Path) -> Result<(), std::io::Error> {
        self.write_stamped(path).map(|_| ())
    }

    /// [`MarketState::write`], returning the stamp of the file it wrote: taken before the rename,
    /// so a file another process renames into place just after is never taken for this one.
    fn write_stamped(&self, path: &Path) -> Result<Option<FileStamp>, std::io::Error> {
        let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&temporary, serde_json::to_vec(self)?)?;
        let stamp = FileStamp::of(&temporary);
        std::fs::rename(&temporary, path)?;
        Ok(stamp)
    }
}

/// One call the market received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// When.
    pub at: DateTime<Utc>,
    /// `launch`, `terminate`, `list_instances`, `list_offers` or `status`.
    pub operation: &'static str,
    /// The attempt label (launch) or machine id (terminate, status); empty otherwise.
    pub subject: String,
    /// `ok`, or what went wrong: a failure class (`rate_limited`, `outage`, `capacity`), a lost or
    /// cut-off answer, a glitched listing (`empty`, `partial`, `null`), `not_found`.
    pub outcome: String,
}

/// A terminate call that reached a machine, and what the machine really was when it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destruction {
    /// When.
    pub at: DateTime<Utc>,
    /// The provider.
    pub provider: String,
    /// The machine.
    pub machine: String,
    /// The attempt label it carried.
    pub label: String,
    /// What it was just before the call.
    pub was: Truth,
}

/// How the market names the machines it launches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineIds {
    /// `sim-1`, `sim-2`, ... in launch order, as a console numbers them: `tgp-dev run`'s market.
    Numbered,
    /// `m-<attempt label>`: the simulation's, where instance actors run concurrently and an id
    /// must not depend on which launch came first.
    ByLabel,
}

/// What the market holds beyond its state file: the logs only this process needs.
#[derive(Default)]
struct Books {
    saved: MarketState,
    /// Every call, when the market keeps a log (`tgp-dev sim`); a long-running market does not,
    /// as the log would grow without end.
    calls: Option<Vec<Call>>,
    destroyed: Vec<Destruction>,
    terminate_calls: BTreeMap<String, u32>,
    /// The state file as this process last read or wrote it: unchanged since, it need not be read
    /// again (with 10,000 machines a read is tens of milliseconds, on every call).
    file_seen: Option<FileStamp>,
}

/// What tells one version of the state file from another: every write is a new file renamed into
/// place, so a new inode, besides its length and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp { inode: meta.ino(), len: meta.len(), modified: meta.modified().ok() })
    }
}

/// The in-memory market.
pub struct Market {
    name: ProviderName,
    catalog: Catalog,
    clock: Clock,
    chaos: Chaos,
    ids: MachineIds,
    state_file: Option<PathBuf>,
    books: Mutex<Books>,
}

impl Market {
    /// `tgp-dev sim`'s provider `name`: the catalog of `catalog_seed`, the misfortunes of `chaos`
    /// on `clock`, and a log of every call.
    pub fn new(name: ProviderName, catalog_seed: u64, clock: Clock, chaos: Chaos) -> Self {
        let books = Books { calls: Some(Vec::new()), ..Books::default() };
        Market {
            catalog: Catalog::new(catalog_seed, &name, clock.now()),
            name,
            clock,
            chaos,
            ids: MachineIds::ByLabel,
            state_file: None,
            books: Mutex::new(books),
        }
    }

    /// `tgp-dev run`'s simulated market, on the wall clock; its machines are read back from the
    /// state file when there is one.
    pub fn simulated(config: SimulatedConfig) -> Result<Self, std::io::Error> {
        let name: ProviderName = SIMULATED.parse().expect("valid provider name");
        let saved = match &config.state_file {
            Some(path) if path.exists() => MarketState::read(path)?,
            _ => MarketState::default(),
        };
        let chaos = Chaos::quiet(config.seed, config.boot_time, config.mean_spot_life);
        Ok(Market {
            catalog: Catalog::new(config.seed, &name, Utc::now()),
            name,
            clock: Clock::System,
            chaos,
            ids: MachineIds::Numbered,
            state_file: config.state_file,
            books: Mutex::new(Books { saved, ..Books::default() }),
        })
    }

    /// Every call received, in order (empty when the market keeps no log).
    pub fn calls(&self) -> Vec<Call> {
        self.books.lock().expect("market books").calls.clone().unwrap_or_default()
    }

    /// Every machine ever launched, by id.
    pub fn machines(&self) -> BTreeMap<String, Machine> {
        self.books.lock().expect("market books").saved.machines.clone()
    }

    /// Ids of the machines that exist at `now` on the market's clock: not terminated, not gone.
    pub fn live_machines(&self) -> Vec<String> {
        let now = self.clock.now();
        let books = self.books.lock().expect("market books");
        let live = |m: &&Machine| !matches!(m.truth(now), Truth::Terminated | Truth::Gone);
        books.saved.machines.values().filter(live).map(|m| m.id.clone()).collect()
    }

    /// Every terminate call that reached a machine, in order.
    pub fn destroyed(&self) -> Vec<Destruction> {
        self.books.lock().expect("market books").destroyed.clone()
    }

    /// The provider's name.
    pub fn name(&self) -> &ProviderName {
        &self.name
    }

    /// Its catalog: what fits a request in truth, whatever the calls answer.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Preempts a live machine now, as a provider reclaiming spot capacity would; false when
    /// there is no such machine.
    pub fn interrupt(&self, machine_id: &str) -> bool {
        let now = self.clock.now();
        self.change(|books| match books.saved.machines.get_mut(machine_id) {
            Some(m) if m.truth(now).alive() => {
                m.preempt(now);
                true
            }
            _ => false,
        })
    }

    /// Changes how the market behaves from now on.
    pub fn cue(&self, cue: &MarketCue) {
        self.change(|books| {
            let saved = &mut books.saved;
            if let Some(n) = cue.refuse_launches {
                saved.refuse_launches = n;
            }
            if let Some(n) = cue.lose_launch_answers {
                saved.lose_launch_answers = n;
            }
            if let Some(spot) = cue.spot {
                saved.spot_withdrawn = !spot;
            }
        });
    }

    /// Runs `change` on the market, read first from the state file and written back after, when
    /// there is one: the file is the market, and another process may have changed it since (the
    /// leader before this standby took over, or a benchmark preempting a machine). Written on
    /// every change so a killed controller leaves the market as it was.
    fn change<T>(&self, change: impl FnOnce(&mut Books) -> T) -> T {
        let mut books = self.books.lock().expect("market books");
        let Some(path) = &self.state_file else {
            return change(&mut books);
        };
        let stamp = FileStamp::of(path);
        if stamp.is_none() || stamp != books.file_seen {
            match MarketState::read(path) {
                Ok(saved) => books.saved = saved,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "simulated market unreadable; keeping the one in memory")
                }
            }
        }
        let out = change(&mut books);
        books.file_seen = match books.saved.write_stamped(path) {
            Ok(stamp) => stamp,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the simulated market");
                None
            }
        };
        out
    }
}
