//! Settings that change while the server runs: readers take a snapshot (an `Arc`)
//! when a connection starts; the settings watcher swaps in a new value.

use std::sync::{Arc, RwLock};

pub struct Live<T> {
    current: Arc<RwLock<Arc<T>>>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            current: self.current.clone(),
        }
    }
}

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live {
            current: Arc::new(RwLock::new(Arc::new(value))),
        }
    }

    /// The value now; holding it keeps a consistent view for a whole session.
    pub fn get(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set(&self, value: T) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

#[cfg(test)]
mod tests {
    use super::Live;

    #[test]
    fn snapshots_stay_while_new_readers_see_updates() {
        let live = Live::new(1);
        let before = live.get();
        live.clone().set(2);
        assert_eq!(*before, 1);
        assert_eq!(*live.get(), 2);
    }
}
