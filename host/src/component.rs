//! What every source, transform and sink has in common: a config table selected by its `type`
//! ([`ComponentConfig`]), and what the pipeline shares with all of them ([`Shared`]).
//!
//! Each kind (`sources`, `transforms`, `sinks`) lists its types once with [`component_types!`],
//! which writes the `type`-tagged config enum and its dispatch: adding a component is one new
//! file, implementing the kind's trait, plus one line in that list.

use std::path::PathBuf;
use std::sync::Arc;

use crate::health::Health;
use crate::shutdown::{Shutdown, SourcesLeft};
use crate::transforms::anomaly::model::Controls;

/// A component's config table, `[sources.ID]`, `[transforms.ID]` or `[sinks.ID]`.
pub trait ComponentConfig: serde::de::DeserializeOwned + Clone + std::fmt::Debug {
    /// The `type` value that selects this component.
    const TYPE: &'static str;

    /// The components it reads from (none for a source).
    fn inputs(&self) -> &[String] {
        &[]
    }

    /// Where its events wait (sinks only: `[sinks.ID.buffer]`).
    fn buffer(&self) -> Option<&crate::buffer::BufferConfig> {
        None
    }

    /// Named outputs, which inputs name as `ID.NAME` (a `route`'s routes); empty for a
    /// component with its one output `ID`.
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether it has the output `ID.dead_letter`: what it could not handle (records a source
    /// could not decode, records a tag filter could not score, events a sink's far end refused
    /// for good), which go there instead of on when something reads it.
    const DEAD_LETTER: bool = false;

    /// Checks that need more than the types (a URL that parses, a pair of keys that exclude
    /// each other); errors name the key, `ID` being the component's id.
    fn check(&self, _id: &str) -> Result<(), String> {
        Ok(())
    }
}

/// What the running pipeline shares with its components.
pub struct Shared {
    pub data_dir: PathBuf,
    pub shutdown: Shutdown,
    pub health: Health,
    /// Sink ids by topology index (events record which sinks confirmed them by index).
    pub sink_ids: Vec<String>,
    pub sources_left: Arc<SourcesLeft>,
    /// Where tag transforms register their model controls, for the API.
    pub models: Controls,
}

/// The config enum of a kind of component and its dispatch, from one line per type:
///
/// ```ignore
/// component_types! {
///     /// `[sinks.ID]`
///     pub enum SinkConfig: SinkType {
///         Console(console::ConsoleConfig),
///         File(file::FileSinkConfig),
///     }
///     start(start: SinkStart) -> Result<JoinHandle<()>, String> => start_sink;
/// }
/// ```
///
/// writes `SinkConfig` (a serde enum tagged by `type`, each variant named by its config's
/// `TYPE`) with `inputs`, `type_name`, `check`, `explain` (a table's error with its key) and
/// `start`, which calls the generic `start_sink::<C>` for the variant's config type (one
/// argument: what the topology gives a component of that kind).
#[macro_export]
macro_rules! component_types {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $kind:ident { $($variant:ident($($config:ident)::+)),+ $(,)? }
        $start:ident($arg:ident: $argty:ty) -> $ret:ty => $generic_start:path;
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, serde::Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
        pub enum $name {
            $($variant($($config)::+)),+
        }

        impl $name {
            /// Every `type` this kind accepts.
            pub const TYPES: &'static [&'static str] =
                &[$(<$($config)::+ as $crate::component::ComponentConfig>::TYPE),+];

            pub fn inputs(&self) -> &[String] {
                match self {
                    $($name::$variant(c) => $crate::component::ComponentConfig::inputs(c)),+
                }
            }

            pub fn buffer(&self) -> Option<&$crate::buffer::BufferConfig> {
                match self {
                    $($name::$variant(c) => $crate::component::ComponentConfig::buffer(c)),+
                }
            }

            pub fn outputs(&self) -> Vec<String> {
                match self {
                    $($name::$variant(c) => $crate::component::ComponentConfig::outputs(c)),+
                }
            }

            /// See [`ComponentConfig::DEAD_LETTER`].
            pub fn dead_letter(&self) -> bool {
                match self {
                    $($name::$variant(_) => <$($config)::+ as $crate::component::ComponentConfig>::DEAD_LETTER),+
                }
            }

            pub fn type_name(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => <$($config)::+ as $crate::component::ComponentConfig>::TYPE),+
                }
            }

            pub fn check(&self, id: &str) -> Result<(), String> {
                match self {
                    $($name::$variant(c) => $crate::component::ComponentConfig::check(c, id)),+
                }
            }

            /// The error in a table of this kind, with its key (see
            /// [`crate::config::explain_as`]); None for a table that reads, or whose `type` is
            /// unknown (serde names that one itself).
            pub fn explain(table: &toml::Table) -> Option<String> {
                let ty = table.get("type")?.as_str()?;
                $(
                    if ty == <$($config)::+ as $crate::component::ComponentConfig>::TYPE {
                        return $crate::config::explain_as::<$($config)::+>(table);
                    }
                )+
                None
            }

            pub fn $start(self, $arg: $argty) -> $ret {
                match self {
                    $($name::$variant(c) => $generic_start(c, $arg)),+
                }
            }
        }

        #[cfg(test)]
        mod component_types_tests {
            use super::*;

            /// serde picks a variant by its snake_case name; the dispatch by `TYPE`: they agree.
            #[test]
            fn each_type_name_selects_its_variant() {
                for ty in $name::TYPES {
                    let err = toml::from_str::<$name>(&format!("type = {ty:?}\nno_such_key_anywhere = 1"))
                        .unwrap_err()
                        .to_string();
                    assert!(!err.contains("unknown variant"), "{ty}: {err}");
                }
            }
        }
    };
}
