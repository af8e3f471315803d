//! `manifest.json`, format 1: the typed document and its validation.
//!
//! Every rule here is stated in `docs/bundle-format.md`, and `flowtag_export.manifest.validate`
//! applies the same ones before a bundle is written. Errors name the key and what was expected.

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::error::BundleError;

pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub created: String,
    pub kind: Kind,
    #[serde(default)]
    pub schema: String,
    #[serde(default)]
    pub training: serde_json::Value,
    pub input: Input,
    pub output: Output,
    pub features: Vec<Feature>,
    #[serde(default)]
    pub missing: MissingRule,
    pub threshold: f64,
    pub calibration: Calibration,
    pub reference: Vec<Reference>,
    #[serde(default)]
    pub metrics: serde_json::Value,
    pub model_sha256: String,
    #[serde(default)]
    pub canaries: Vec<Canary>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    IsolationForest,
    Autoencoder,
    Classifier,
    /// A score that counts what normal traffic never showed (a linear model over hashed tokens).
    Novelty,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IsolationForest => "isolation_forest",
            Kind::Autoencoder => "autoencoder",
            Kind::Classifier => "classifier",
            Kind::Novelty => "novelty",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Input {
    pub name: String,
    pub width: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Output {
    /// The graph output holding the raw score.
    pub name: String,
    /// Which column of that output (for `[N, k]` outputs).
    #[serde(default)]
    pub column: usize,
    /// For autoencoders: the `[N, width]` output of per-column residuals.
    #[serde(default)]
    pub residual: Option<String>,
    #[serde(default = "yes")]
    pub higher_is_anomalous: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric {
        #[serde(default)]
        fill: f64,
        #[serde(default)]
        transforms: Vec<Transform>,
    },
    Categorical {
        #[serde(default = "onehot")]
        encoding: Encoding,
        #[serde(default)]
        categories: Vec<String>,
        /// The category of an absent or null field (else the unknown bucket).
        #[serde(default)]
        fill: Option<String>,
    },
    /// A URL, request target or form body, read by [`crate::text`].
    Text { text: TextSpec },
}

/// How a text feature reads its field (`docs/bundle-format.md`, "Text features").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    /// The text-feature version this manifest was written for; only 1 exists.
    pub version: u32,
    /// Bytes of the value read; the rest is cut off (its length still counts).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Rounds of percent-decoding; a round that decodes nothing ends them early.
    #[serde(default = "default_rounds")]
    pub decode_rounds: u32,
    #[serde(default)]
    pub shape: TextShape,
    /// Character n-grams of the normalised text, hashed into buckets.
    #[serde(default)]
    pub ngrams: Option<Hashing>,
    /// The request's tokens (path segments, parameter names, value shapes), hashed into buckets.
    #[serde(default)]
    pub tokens: Option<Hashing>,
    #[serde(default)]
    pub keywords: Vec<KeywordGroup>,
}

fn default_max_bytes() -> usize {
    8192
}

fn default_rounds() -> u32 {
    2
}

/// `target`: `path?query`, as an access log's request line holds it; `form`: an
/// `application/x-www-form-urlencoded` body, all parameters.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TextShape {
    #[default]
    Target,
    Form,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hashing {
    pub n: usize,
    pub buckets: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeywordGroup {
    pub name: String,
    pub terms: Vec<String>,
}

fn onehot() -> Encoding {
    Encoding::Onehot
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Onehot,
    Index,
}

/// One entry of a feature's `fields`: a field name, or a name with how that field's value is
/// converted to the feature's own units or categories (an alias from another flow tool).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Field {
    Name(String),
    Alias(Alias),
}

/// A field that needs converting: `scale` multiplies a numeric value (milliseconds to
/// seconds: 0.001); `map` replaces a categorical value (protocol number `"6"` to `"tcp"`),
/// and `default` is the category of a value the map lacks (without it, such a value is read
/// as it is).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alias {
    pub name: String,
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub map: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub default: Option<String>,
}

impl Field {
    pub fn name(&self) -> &str {
        match self {
            Field::Name(n) => n,
            Field::Alias(a) => &a.name,
        }
    }

    pub fn alias(&self) -> Option<&Alias> {
        match self {
            Field::Name(_) => None,
            Field::Alias(a) => Some(a),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Feature {
    pub name: String,
    pub fields: Vec<Field>,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(flatten)]
    pub kind: FeatureKind,
}

impl Feature {
    /// Columns this feature occupies in the model input.
    pub fn width(&self) -> usize {
        match &self.kind {
            FeatureKind::Categorical { encoding: Encoding::Onehot, categories, .. } => categories.len() + 1,
            FeatureKind::Text { text } => crate::text::width(text),
            _ => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Transform {
    Clip { min: f64, max: f64 },
    Log1p,
    Scale { mean: f64, std: f64 },
}

#[derive(Clone, Debug, Deserialize)]
pub struct MissingRule {
    #[serde(default = "default_tokens")]
    pub tokens: Vec<String>,
    #[serde(default)]
    pub infinity: Infinity,
    #[serde(default)]
    pub policy: Policy,
}

impl Default for MissingRule {
    fn default() -> Self {
        MissingRule { tokens: default_tokens(), infinity: Infinity::default(), policy: Policy::default() }
    }
}

fn default_tokens() -> Vec<String> {
    ["", "-", "?", "nan", "null", "none", "(empty)"].iter().map(|s| s.to_string()).collect()
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Infinity {
    Missing,
    #[default]
    Clip,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    #[default]
    Fill,
    Unscored,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Calibration {
    pub quantiles: Vec<f64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Reference {
    Numeric {
        mean: f64,
        std: f64,
    },
    Categorical {
        frequencies: Vec<f64>,
    },
    /// A text feature: one mean and std per column.
    Text {
        mean: Vec<f64>,
        std: Vec<f64>,
    },
}

#[derive(Clone, Debug, Deserialize)]
pub struct Canary {
    pub record: serde_json::Map<String, serde_json::Value>,
    pub raw_score: f64,
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub verdict: Option<String>,
}

impl Manifest {
    /// Parse and check `manifest.json` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, BundleError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| BundleError::Manifest {
            key: "(document)".into(),
            problem: format!("not a format-1 manifest: {e}"),
        })?;
        m.validate()?;
        Ok(m)
    }

    /// Columns the features make, in order.
    pub fn width(&self) -> usize {
        self.features.iter().map(Feature::width).sum()
    }

    fn validate(&self) -> Result<(), BundleError> {
        let bad = |key: String, problem: String| Err(BundleError::Manifest { key, problem });
        if self.format != FORMAT {
            return bad("format".into(), format!("expected {FORMAT}, got {}", self.format));
        }
        if self.features.is_empty() {
            return bad("features".into(), "expected at least one feature".into());
        }
        let mut names = BTreeMap::new();
        for (i, f) in self.features.iter().enumerate() {
            if let Some(j) = names.insert(f.name.as_str(), i) {
                return bad(format!("features[{i}].name"), format!("{:?} is also features[{j}]", f.name));
            }
            if f.fields.is_empty() {
                return bad(format!("features[{i}].fields"), "expected at least one field name".into());
            }
            if f.fields.len() > usize::from(u16::MAX) {
                return bad(format!("features[{i}].fields"), "expected at most 65535 field names".into());
            }
            if f.fields[0].alias().is_some() {
                return bad(
                    format!("features[{i}].fields[0]"),
                    "the canonical name must be a plain name, not an alias object".into(),
                );
            }
            let numeric = matches!(f.kind, FeatureKind::Numeric { .. });
            for (k, a) in f.fields.iter().enumerate().filter_map(|(k, f)| Some((k, f.alias()?))) {
                let key = format!("features[{i}].fields[{k}]");
                if matches!(f.kind, FeatureKind::Text { .. }) {
                    return bad(key, "a text feature's fields are plain names".into());
                }
                match (numeric, a) {
                    (true, Alias { map: Some(_), .. } | Alias { default: Some(_), .. }) => {
                        return bad(
                            key,
                            "map and default apply to categorical features only; a numeric one takes scale".into(),
                        )
                    }
                    (false, Alias { scale: Some(_), .. }) => {
                        return bad(key, "scale applies to numeric features only; a categorical one takes map".into())
                    }
                    (_, Alias { scale: Some(k), .. }) if !(k.is_finite() && *k != 0.0) => {
                        return bad(key, format!("scale {k} is not a finite, non-zero number"))
                    }
                    _ => {}
                }
            }
            match &f.kind {
                FeatureKind::Numeric { fill, transforms } => {
                    if !fill.is_finite() {
                        return bad(format!("features[{i}].fill"), "expected a finite number".into());
                    }
                    for (k, t) in transforms.iter().enumerate() {
                        let key = format!("features[{i}].transforms[{k}]");
                        match *t {
                            Transform::Clip { min, max } if min.partial_cmp(&max).is_none_or(|o| o.is_gt()) => {
                                return bad(key, format!("clip min {min} is above max {max}"))
                            }
                            Transform::Scale { mean, std } if !(std > 0.0 && std.is_finite() && mean.is_finite()) => {
                                return bad(key, "scale needs a finite mean and std > 0".into())
                            }
                            _ => {}
                        }
                    }
                }
                FeatureKind::Categorical { categories, .. } => {
                    let mut seen = std::collections::BTreeSet::new();
                    if let Some(dup) = categories.iter().find(|c| !seen.insert(c.as_str())) {
                        return bad(format!("features[{i}].categories"), format!("{dup:?} appears twice"));
                    }
                }
                FeatureKind::Text { text } => {
                    if let Err((key, problem)) = crate::text::check(text) {
                        return bad(format!("features[{i}].text.{key}"), problem);
                    }
                }
            }
        }
        if self.input.width != self.width() {
            return bad(
                "input.width".into(),
                format!("{} but the features make {} columns", self.input.width, self.width()),
            );
        }
        if self.reference.len() != self.features.len() {
            return bad(
                "reference".into(),
                format!("{} entries, expected one per feature ({})", self.reference.len(), self.features.len()),
            );
        }
        for (i, (r, f)) in self.reference.iter().zip(&self.features).enumerate() {
            match (r, &f.kind) {
                (Reference::Numeric { .. }, FeatureKind::Numeric { .. }) => {}
                (Reference::Categorical { frequencies }, FeatureKind::Categorical { categories, .. })
                    if frequencies.len() == categories.len() + 1 => {}
                (Reference::Text { mean, std }, FeatureKind::Text { .. })
                    if mean.len() == f.width()
                        && std.len() == f.width()
                        && mean.iter().chain(std).all(|v| v.is_finite())
                        && std.iter().all(|s| *s >= 0.0) => {}
                _ => {
                    return bad(
                        format!("reference[{i}]"),
                        format!("does not fit feature {:?} (numeric: mean/std; categorical: one frequency per category plus unknown; text: finite mean and std >= 0 arrays, one per column)", f.name),
                    )
                }
            }
        }
        let q = &self.calibration.quantiles;
        if q.len() < 2 || q.iter().any(|v| !v.is_finite()) || q.windows(2).any(|w| w[1] < w[0]) {
            return bad("calibration.quantiles".into(), "expected at least 2 finite, non-decreasing values".into());
        }
        if !self.threshold.is_finite() {
            return bad("threshold".into(), "expected a finite number".into());
        }
        if self.model_sha256.len() != 64 || !self.model_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("model_sha256".into(), "expected 64 hex digits".into());
        }
        Ok(())
    }
}
