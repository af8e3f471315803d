//! Liveness and readiness for `/health` and `/ready`.
//!
//! `/health` answers while the process serves its API. `/ready` answers 200 once every component
//! that must prepare (a transform loading its model, a source binding its port) has said so, and
//! 503 with the reasons before that; Kubernetes keeps a node's pod out of rotation until then.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Health {
    /// Component id -> `None` when ready, or why it is not.
    state: Arc<Mutex<BTreeMap<String, Option<String>>>>,
}

impl Health {
    pub fn pending(&self, id: &str, why: impl Into<String>) {
        self.state.lock().expect("health lock").insert(id.to_string(), Some(why.into()));
    }

    pub fn ready(&self, id: &str) {
        self.state.lock().expect("health lock").insert(id.to_string(), None);
    }

    /// Forget every component (a new topology registers its own).
    pub fn reset(&self) {
        self.state.lock().expect("health lock").clear();
    }

    /// Whether everything is ready, and what is not.
    pub fn report(&self) -> (bool, Vec<(String, String)>) {
        let state = self.state.lock().expect("health lock");
        let waiting: Vec<(String, String)> =
            state.iter().filter_map(|(id, why)| why.as_ref().map(|w| (id.clone(), w.clone()))).collect();
        (waiting.is_empty() && !state.is_empty(), waiting)
    }
}
