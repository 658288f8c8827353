//! The fence: after a controller's lease is lost, nothing it still runs may reach a provider or
//! the journal.
//!
//! A [`Fence`] holds the deadline of the lease (the instant by which it must have been renewed);
//! every check compares the clock to it at the moment of the call, so a process that was paused
//! (a frozen VM, a partition, a long GC-like stall) and resumes after its deadline is refused at
//! once, before any of its timers have run and whatever order its tasks wake in. [`Fenced`] puts
//! a provider behind the fence; the JetStream journal checks the same fence before each append.
//! An open fence ([`Fence::open`]) never closes: one controller without a lease, the simulation,
//! the benchmarks.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use tgp_events::events::FailureClass;
use tgp_events::{GpuType, Region};

use crate::provider::{
    LaunchReceipt, LaunchSpec, Offer, OfferFilter, ProviderClient, ProviderError, ProviderInfo, ProviderInstance,
    RateLimits,
};

/// Until when this process may act. Cheap to clone; clones share the deadline.
#[derive(Clone, Debug, Default)]
pub struct Fence {
    /// `None`: open for good; `Some(deadline)`: open until then.
    deadline: Arc<Mutex<Option<Instant>>>,
    /// Closed for good (the lease was taken by another).
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Fence {
    /// A fence that never closes.
    pub fn open() -> Self {
        Fence::default()
    }

    /// A fence open until `deadline`, unless moved.
    pub fn until(deadline: Instant) -> Self {
        Fence { deadline: Arc::new(Mutex::new(Some(deadline))), ..Fence::default() }
    }

    /// Moves the deadline (a renewal went through).
    pub fn extend(&self, deadline: Instant) {
        *self.deadline.lock().expect("fence") = Some(deadline);
    }

    /// Closes the fence for good.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits up to `wait` for the fence to be open (a lapsed lease held again); true if it is.
    pub async fn wait_open(&self, wait: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while !self.is_open() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        true
    }

    /// True while this process may act.
    pub fn is_open(&self) -> bool {
        !self.closed.load(std::sync::atomic::Ordering::SeqCst)
            && self.deadline.lock().expect("fence").is_none_or(|deadline| Instant::now() < deadline)
    }
}

/// A provider behind a fence: each call is refused, without reaching the provider, once the fence
/// is closed.
pub struct Fenced {
    inner: Arc<dyn ProviderClient>,
    fence: Fence,
}

impl Fenced {
    /// `inner`, behind `fence`.
    pub fn new(inner: Arc<dyn ProviderClient>, fence: Fence) -> Self {
        Fenced { inner, fence }
    }

    fn check(&self) -> Result<(), ProviderError> {
        if self.fence.is_open() {
            return Ok(());
        }
        // Not a provider's answer: the call was never made, and no conclusion may be drawn from
        // it (the process stops; the next leader looks for itself).
        Err(ProviderError::new(
            &self.inner.info().name,
            FailureClass::Unknown,
            "not called: this controller's lease is lost, another one leads",
        ))
    }
}

#[async_trait]
impl ProviderClient for Fenced {
    fn info(&self) -> ProviderInfo {
        self.inner.info()
    }
    fn rate_limits(&self) -> RateLimits {
        self.inner.rate_limits()
    }
    fn translate_gpu(&self, gpu: GpuType) -> Option<String> {
        self.inner.translate_gpu(gpu)
    }
    fn translate_region(&self, region: &Region) -> Option<String> {
        self.inner.translate_region(region)
    }
    async fn list_offers(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        self.check()?;
        self.inner.list_offers(filter).await
    }
    async fn launch(&self, spec: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
        self.check()?;
        self.inner.launch(spec).await
    }
    async fn terminate(&self, provider_instance_id: &str) -> Result<(), ProviderError> {
        self.check()?;
        self.inner.terminate(provider_instance_id).await
    }
    async fn status(&self, provider_instance_id: &str) -> Result<ProviderInstance, ProviderError> {
        self.check()?;
        self.inner.status(provider_instance_id).await
    }
    async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
        self.check()?;
        self.inner.list_instances().await
    }
    fn report_unavailable(&self, offer_id: &str, spot: bool) {
        self.inner.report_unavailable(offer_id, spot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A provider that counts the calls reaching it and lists nothing.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl ProviderClient for Counting {
        fn info(&self) -> ProviderInfo {
            ProviderInfo {
                name: "counting".parse().unwrap(),
                supports_spot: false,
                supports_bids: false,
                docs_url: String::new(),
            }
        }
        fn rate_limits(&self) -> RateLimits {
            RateLimits { requests_per_minute: 60, burst: 1, launches: None }
        }
        fn translate_gpu(&self, _: GpuType) -> Option<String> {
            None
        }
        fn translate_region(&self, _: &Region) -> Option<String> {
            None
        }
        async fn list_offers(&self, _: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
        async fn launch(&self, _: &LaunchSpec) -> Result<LaunchReceipt, ProviderError> {
            unreachable!("no launch in this test")
        }
        async fn terminate(&self, _: &str) -> Result<(), ProviderError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn status(&self, _: &str) -> Result<ProviderInstance, ProviderError> {
            unreachable!("no status call in this test")
        }
        async fn list_instances(&self) -> Result<Vec<ProviderInstance>, ProviderError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn once_the_fence_closes_no_call_reaches_the_provider_and_none_looks_like_its_answer() {
        let counting = Arc::new(Counting::default());
        let fence = Fence::until(Instant::now() + Duration::from_secs(60));
        let fenced = Fenced::new(counting.clone(), fence.clone());
        fenced.list_instances().await.unwrap();
        fenced.terminate("m-1").await.unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);

        // Paused past the deadline: refused at once, whatever else has run meanwhile.
        fence.extend(Instant::now() - Duration::from_millis(1));
        let refused = fenced.list_instances().await.unwrap_err();
        assert!(fenced.terminate("m-1").await.is_err() && fenced.list_offers(&OfferFilter::default()).await.is_err());
        assert_eq!(counting.0.load(Ordering::SeqCst), 2, "nothing reached the provider");
        assert_eq!(refused.class, FailureClass::Unknown, "an unknown outcome, never a provider's refusal");
    }

    #[test]
    fn a_fence_is_open_until_its_deadline_and_closed_for_good_once_closed() {
        let fence = Fence::until(Instant::now() + Duration::from_secs(60));
        assert!(fence.is_open());
        fence.extend(Instant::now() - Duration::from_millis(1));
        assert!(!fence.is_open(), "past the deadline, without any task having run");
        fence.extend(Instant::now() + Duration::from_secs(60));
        assert!(fence.is_open());
        fence.close();
        fence.extend(Instant::now() + Duration::from_secs(60));
        assert!(!fence.is_open(), "closed for good");
        assert!(Fence::open().is_open());
    }
}
