//! The console's texts: one Fluent catalogue per language (`hq-sync/i18n/{id,en}.ftl`,
//! compiled in), Bahasa Indonesia first. Templates never hold a text of their own: they
//! ask [`Tr`] for it by key, so a translator edits one file per language.
//!
//! Invariants: both catalogues parse and hold the same keys (a test checks, and every key
//! a template uses); a missing key shows as the key itself and is logged, never a panic.

use crate::staff::Lang;
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};

pub const CATALOGUES: [(Lang, &str); 2] = [
    (Lang::Id, include_str!("../../i18n/id.ftl")),
    (Lang::En, include_str!("../../i18n/en.ftl")),
];

#[derive(Debug, thiserror::Error)]
#[error("text catalogue {lang}: {why}")]
pub struct I18nError {
    lang: &'static str,
    why: String,
}

pub struct I18n {
    bundles: Vec<(Lang, FluentBundle<FluentResource>)>,
}

impl I18n {
    pub fn new() -> Result<I18n, I18nError> {
        let mut bundles = Vec::new();
        for (lang, src) in CATALOGUES {
            let err = |why: String| I18nError {
                lang: lang.as_str(),
                why,
            };
            let res = FluentResource::try_new(src.to_owned())
                .map_err(|(_, errs)| err(format!("{errs:?}")))?;
            let id = lang
                .as_str()
                .parse()
                .map_err(|e| err(format!("language id: {e}")))?;
            let mut b = FluentBundle::new_concurrent(vec![id]);
            // Values go into HTML through the templates' escaping; Unicode isolation
            // marks around them would only confuse copy and paste.
            b.set_use_isolating(false);
            b.add_resource(res)
                .map_err(|errs| err(format!("{errs:?}")))?;
            bundles.push((lang, b));
        }
        Ok(I18n { bundles })
    }

    pub fn tr(&self, lang: Lang) -> Tr<'_> {
        let bundle = self
            .bundles
            .iter()
            .find(|(l, _)| *l == lang)
            .or_else(|| self.bundles.first())
            .map(|(_, b)| b);
        Tr { bundle, lang }
    }

    /// Every message key of a language's catalogue.
    pub fn keys(&self, lang: Lang) -> Vec<String> {
        CATALOGUES
            .iter()
            .filter(|(l, _)| *l == lang)
            .flat_map(|(_, src)| {
                src.lines().filter_map(|l| {
                    let (k, _) = l.split_once('=')?;
                    let k = k.trim();
                    (!l.starts_with([' ', '#', '.']) && !k.is_empty()).then(|| k.to_owned())
                })
            })
            .collect()
    }
}

/// A number a text counts (templates pass references).
pub trait Count {
    fn as_f64(&self) -> f64;
}

impl Count for u64 {
    fn as_f64(&self) -> f64 {
        *self as f64
    }
}

impl Count for i64 {
    fn as_f64(&self) -> f64 {
        *self as f64
    }
}

impl Count for usize {
    fn as_f64(&self) -> f64 {
        *self as f64
    }
}

impl<T: Count> Count for &T {
    fn as_f64(&self) -> f64 {
        (**self).as_f64()
    }
}

/// The texts of one language, for one page.
#[derive(Clone, Copy)]
pub struct Tr<'a> {
    bundle: Option<&'a FluentBundle<FluentResource>>,
    lang: Lang,
}

impl<'a> Tr<'a> {
    pub fn lang(&self) -> &'static str {
        self.lang.as_str()
    }

    fn format(&self, key: &str, args: Option<&FluentArgs<'_>>) -> String {
        let Some(pattern) = self
            .bundle
            .and_then(|b| b.get_message(key))
            .and_then(|m| m.value())
        else {
            tracing::warn!(key, lang = self.lang.as_str(), "console text missing");
            return key.to_owned();
        };
        let mut errors = Vec::new();
        let s = self
            .bundle
            .map(|b| b.format_pattern(pattern, args, &mut errors).into_owned())
            .unwrap_or_default();
        if !errors.is_empty() {
            tracing::warn!(key, ?errors, "console text has errors");
        }
        s
    }

    /// The text of `key`.
    pub fn get(&self, key: &str) -> String {
        self.format(key, None)
    }

    /// The text of `key` with `$n` a number (for plurals).
    pub fn n(&self, key: &str, n: impl Count) -> String {
        let mut a = FluentArgs::new();
        a.set("n", FluentValue::from(n.as_f64()));
        self.format(key, Some(&a))
    }

    /// The text of `key` with named string arguments.
    pub fn with(&self, key: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
        let mut a = FluentArgs::new();
        for (k, v) in args {
            a.set(*k, FluentValue::from(v.to_string()));
        }
        self.format(key, Some(&a))
    }

    /// `key` with one string argument.
    pub fn arg(&self, key: &str, name: &str, value: &str) -> String {
        self.with(key, &[(name, &value)])
    }

    /// `key` with two string arguments.
    pub fn arg2(&self, key: &str, n1: &str, v1: &str, n2: &str, v2: &str) -> String {
        self.with(key, &[(n1, &v1), (n2, &v2)])
    }

    /// `key` with `$have` and `$of` numbers (progress).
    pub fn of(&self, key: &str, have: impl Count, of: impl Count) -> String {
        let mut a = FluentArgs::new();
        a.set("have", FluentValue::from(have.as_f64()));
        a.set("of", FluentValue::from(of.as_f64()));
        self.format(key, Some(&a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogues_parse_and_hold_the_same_keys() {
        let i = I18n::new().unwrap();
        let mut id = i.keys(Lang::Id);
        let mut en = i.keys(Lang::En);
        id.sort();
        en.sort();
        let only_id: Vec<_> = id.iter().filter(|k| !en.contains(k)).collect();
        let only_en: Vec<_> = en.iter().filter(|k| !id.contains(k)).collect();
        assert!(
            only_id.is_empty() && only_en.is_empty(),
            "id only: {only_id:?}, en only: {only_en:?}"
        );
        assert_eq!(i.tr(Lang::Id).get("login-title"), "Masuk");
        assert_eq!(i.tr(Lang::En).get("login-title"), "Sign in");
        assert_eq!(i.tr(Lang::Id).get("no-such-key"), "no-such-key");
    }

    #[test]
    fn every_key_a_template_uses_exists() {
        let i = I18n::new().unwrap();
        let keys = i.keys(Lang::Id);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut missing = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for call in [
                "t.get(\"",
                "t.n(\"",
                "t.with(\"",
                "t.of(\"",
                "t.arg(\"",
                "t.arg2(\"",
            ] {
                for part in text.split(call).skip(1) {
                    let key = part.split('"').next().unwrap_or_default();
                    if !keys.iter().any(|k| k == key) {
                        missing.push(format!("{}: {key}", path.display()));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "keys missing from the catalogues: {missing:?}"
        );
    }
}
