//! Config in TOML with environment overrides, the same way for every binary.
//!
//! `PREFIX__SECTION__KEY=value` overrides `[section] key` (case-insensitive, `__` between
//! levels). The value is read as a TOML scalar when it parses as one (`1883`, `true`,
//! `0.5`), else as a string, so `HQ_SYNC__BROKER__PORT=1884` and
//! `BUS_NODE__BUS_ID=bus-ntt-02` both do what they say.

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("config: {0}")]
    Invalid(String),
}

/// Reads `path` (when given) as TOML, applies `PREFIX__…` environment overrides, and
/// deserializes into `T` (whose serde defaults fill the rest).
pub fn load<T: DeserializeOwned>(
    path: Option<&std::path::Path>,
    env_prefix: &str,
) -> Result<T, ConfigError> {
    let (text, name) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            p.display().to_string(),
        ),
        None => (String::new(), "<defaults>".to_owned()),
    };
    let mut value: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::Toml {
        path: name.clone(),
        source: Box::new(source),
    })?;
    apply_env(&mut value, env_prefix, std::env::vars())?;
    toml::Value::Table(value)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(format!("{name}: {}", e.message())))
}

/// The service catalogue at `path`, or the built-in starter catalogue when none is set.
pub fn load_catalogue(path: Option<&std::path::Path>) -> Result<crate::Catalogue, ConfigError> {
    match path {
        None => Ok(crate::Catalogue::builtin()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?;
            crate::Catalogue::from_toml(&text)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", p.display())))
        }
    }
}

/// Applies overrides from `vars` (split out from [`load`] so tests need not touch the
/// process environment).
pub fn apply_env(
    table: &mut toml::Table,
    prefix: &str,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let want = format!("{}__", prefix.to_ascii_uppercase());
    for (key, raw) in vars {
        let Some(path) = key
            .to_ascii_uppercase()
            .strip_prefix(&want)
            .map(str::to_owned)
        else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.iter().any(String::is_empty) {
            return Err(ConfigError::Invalid(format!("bad override variable {key}")));
        }
        let value = scalar(&raw);
        let mut t = &mut *table;
        for p in &parts[..parts.len() - 1] {
            let entry = t
                .entry(p.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = entry
                .as_table_mut()
                .ok_or_else(|| ConfigError::Invalid(format!("{key}: {p} is not a section")))?;
        }
        if let Some(last) = parts.last() {
            t.insert(last.clone(), value);
        }
    }
    Ok(())
}

fn scalar(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&probe) {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_)
                | toml::Value::Float(_)
                | toml::Value::Boolean(_)
                | toml::Value::Array(_)),
            ) => v,
            _ => toml::Value::String(raw.to_owned()),
        },
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn overrides_nested_keys_with_typed_values() {
        let mut t: toml::Table = toml::from_str("bus_id = \"a\"\n[broker]\nport = 1\n").unwrap();
        let vars = vec![
            ("BUS_NODE__BROKER__PORT".to_owned(), "1884".to_owned()),
            ("BUS_NODE__BUS_ID".to_owned(), "bus-x".to_owned()),
            ("BUS_NODE__SYNC__ENABLED".to_owned(), "true".to_owned()),
            ("OTHER__X".to_owned(), "1".to_owned()),
            (
                "BUS_NODE__BROKER__MORE_HOSTS".to_owned(),
                r#"["b", "c:1885"]"#.to_owned(),
            ),
        ];
        apply_env(&mut t, "BUS_NODE", vars.into_iter()).unwrap();
        assert_eq!(
            t["broker"]["more_hosts"].as_array().map(|a| a.len()),
            Some(2),
            "a TOML array"
        );
        assert_eq!(t["broker"]["port"].as_integer(), Some(1884));
        assert_eq!(t["bus_id"].as_str(), Some("bus-x"));
        assert_eq!(t["sync"]["enabled"].as_bool(), Some(true));
        assert!(!t.contains_key("x"));
    }
}
