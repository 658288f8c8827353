//! A spawned task that ends with its owner, unless the owner takes it first.

use tokio::task::JoinHandle;

/// Aborts its task when dropped: a start that fails half-way must not leave a responder
/// answering or a folder folding. [`AbortOnDrop::into_inner`] hands the task on for good.
pub struct AbortOnDrop<T>(Option<JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    /// Owns `task`.
    pub fn new(task: JoinHandle<T>) -> Self {
        AbortOnDrop(Some(task))
    }

    /// The task, now the caller's to end.
    pub fn into_inner(mut self) -> JoinHandle<T> {
        self.0.take().expect("the task is there until taken, and taking consumes the owner")
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
