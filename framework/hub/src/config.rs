//! Where the Hub is and how to reach it.

use std::path::PathBuf;

/// Hub settings. [`HubConfig::from_env`] reads the variables the Python
/// `huggingface_hub` library reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HubConfig {
    /// The Hub's address (`HF_ENDPOINT`; default `https://huggingface.co`).
    pub endpoint: Option<String>,
    /// The cache folder (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// An access token for private or gated repositories (`HF_TOKEN`).
    /// When `None`, `hf-hub` still looks for the token file that
    /// `huggingface-cli login` writes (`HF_TOKEN_PATH`, `$HF_HOME/token`).
    pub token: Option<String>,
    /// Use only the cache, never the network (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

/// Whether an environment value means "on" (`1`, `true`, `yes`, `on`).
pub fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// The Hub cache folder as `huggingface_hub` resolves it: `HF_HUB_CACHE`,
/// `HUGGINGFACE_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
/// `~/.cache/huggingface/hub` (empty variables count as unset).
fn cache_from_env(var: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(c) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(c);
    }
    if let Some(h) = var("HF_HOME") {
        return PathBuf::from(h).join("hub");
    }
    if let Some(x) = var("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("huggingface/hub");
    }
    PathBuf::from(var("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache/huggingface/hub")
}

/// The Hub's address when none is set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

impl HubConfig {
    /// The settings from the environment.
    pub fn from_env() -> Self {
        Self::from_lookup(&|k: &str| std::env::var(k).ok())
    }

    /// The settings from `var` (a stand-in for the environment; empty
    /// values count as unset).
    fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        HubConfig {
            endpoint: var("HF_ENDPOINT").map(|e| e.trim().trim_end_matches('/').to_string()),
            cache_dir: Some(cache_from_env(&var)),
            token: var("HF_TOKEN").map(|t| t.trim().to_string()),
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)),
        }
    }

    /// The endpoint in use (`https://huggingface.co` when unset).
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT)
    }

    /// The cache folder in use (from the environment when unset).
    pub fn cache(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(|| {
            cache_from_env(&|k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_order_skips_empty_values() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, v)| *n == k && !v.is_empty())
                    .map(|(_, v)| v.to_string())
            }
        };
        let e = env(&[("HF_HUB_CACHE", ""), ("HF_HOME", "/h"), ("HOME", "/u")]);
        assert_eq!(cache_from_env(&e), PathBuf::from("/h/hub"));
        let e = env(&[("HF_HUB_CACHE", "/c"), ("HF_HOME", "/h")]);
        assert_eq!(cache_from_env(&e), PathBuf::from("/c"));
        let e = env(&[("HOME", "/u")]);
        assert_eq!(
            cache_from_env(&e),
            PathBuf::from("/u/.cache/huggingface/hub")
        );
    }

    #[test]
    fn settings_come_from_the_variables() {
        let vars = |k: &str| {
            match k {
                "HF_ENDPOINT" => Some("http://127.0.0.1:8080/ "),
                "HF_HOME" => Some("/h"),
                "HF_TOKEN" => Some("hf_x"),
                "HF_HUB_OFFLINE" => Some("True"),
                _ => None,
            }
            .map(String::from)
        };
        let c = HubConfig::from_lookup(&vars);
        assert_eq!(c.endpoint(), "http://127.0.0.1:8080");
        assert_eq!(c.cache(), PathBuf::from("/h/hub"));
        assert_eq!(c.token.as_deref(), Some("hf_x"));
        assert!(c.offline);
        let c = HubConfig::from_lookup(&|k: &str| (k == "HF_HUB_OFFLINE").then(|| "0".into()));
        assert_eq!(c.endpoint(), DEFAULT_ENDPOINT);
        assert!(!c.offline && c.token.is_none());
    }

    #[test]
    fn truthy_values() {
        for v in ["1", "true", "TRUE", " yes", "on"] {
            assert!(truthy(v), "{v}");
        }
        for v in ["0", "false", "", "no", "2"] {
            assert!(!truthy(v), "{v}");
        }
    }
}
