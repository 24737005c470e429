//! Texts: one Fluent catalogue per language and site (`hq-sync/i18n/{id,en}.ftl`,
//! `bus-node/i18n/{id,en}.ftl`, compiled into their binaries), Bahasa Indonesia first.
//! Templates never hold a text of their own: they ask [`Tr`] for it by key, so a
//! translator edits one file per language.
//!
//! Invariants: a site's catalogues parse and hold the same keys, and hold every key its
//! templates use ([`check_catalogues`], run by each site's tests); a missing key shows as
//! the key itself and is logged, never a panic.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};

/// The languages: Bahasa Indonesia first (the default), English second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Lang {
    #[default]
    Id,
    En,
}

#[derive(Debug, thiserror::Error)]
#[error("language {0:?}: id or en")]
pub struct UnknownLang(String);

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Id, Lang::En];

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Result<Lang, UnknownLang> {
        match s {
            "id" => Ok(Lang::Id),
            "en" => Ok(Lang::En),
            other => Err(UnknownLang(other.chars().take(16).collect())),
        }
    }
}

/// A site's catalogues: one Fluent source per language.
pub type Catalogues = [(Lang, &'static str)];

#[derive(Debug, thiserror::Error)]
#[error("text catalogue {lang}: {why}")]
pub struct I18nError {
    lang: &'static str,
    why: String,
}

pub struct I18n {
    catalogues: &'static Catalogues,
    bundles: Vec<(Lang, FluentBundle<FluentResource>)>,
}

impl I18n {
    pub fn new(catalogues: &'static Catalogues) -> Result<I18n, I18nError> {
        let mut bundles = Vec::new();
        for &(lang, src) in catalogues {
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
        Ok(I18n {
            catalogues,
            bundles,
        })
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
        self.catalogues
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

impl Count for u16 {
    fn as_f64(&self) -> f64 {
        f64::from(*self)
    }
}

impl Count for u32 {
    fn as_f64(&self) -> f64 {
        f64::from(*self)
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
            tracing::warn!(key, lang = self.lang.as_str(), "text missing");
            return key.to_owned();
        };
        let mut errors = Vec::new();
        let s = self
            .bundle
            .map(|b| b.format_pattern(pattern, args, &mut errors).into_owned())
            .unwrap_or_default();
        if !errors.is_empty() {
            tracing::warn!(key, ?errors, "text has errors");
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

/// What is wrong with a site's catalogues: keys only one language has, and keys its
/// templates (the files in `templates`) ask for that the catalogues lack. Empty when sound.
pub fn check_catalogues(i: &I18n, templates: &std::path::Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut id = i.keys(Lang::Id);
    id.sort();
    for lang in Lang::ALL {
        let mut other = i.keys(lang);
        other.sort();
        for k in id.iter().filter(|k| !other.contains(k)) {
            problems.push(format!("{} lacks {k}", lang.as_str()));
        }
        for k in other.iter().filter(|k| !id.contains(k)) {
            problems.push(format!("id lacks {k} ({} has it)", lang.as_str()));
        }
    }
    let entries = match std::fs::read_dir(templates) {
        Ok(e) => e,
        Err(e) => return vec![format!("{}: {e}", templates.display())],
    };
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let Ok(text) = std::fs::read_to_string(&path) else {
            problems.push(format!("{}: unreadable", path.display()));
            continue;
        };
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
                if !id.iter().any(|k| k == key) {
                    problems.push(format!("{}: {key}", path.display()));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    static TEST: [(Lang, &str); 2] = [
        (Lang::Id, "hello = Halo\nitems = { $n } barang\n"),
        (
            Lang::En,
            "hello = Hello\nitems = { $n ->\n [one] one item\n *[other] { $n } items\n}\n",
        ),
    ];

    #[test]
    fn texts_by_key_with_numbers_and_a_missing_key_shown_as_itself() {
        let i = I18n::new(&TEST).unwrap();
        assert_eq!(i.tr(Lang::Id).get("hello"), "Halo");
        assert_eq!(i.tr(Lang::En).get("hello"), "Hello");
        assert_eq!(i.tr(Lang::En).n("items", 1u64), "one item");
        assert_eq!(i.tr(Lang::En).n("items", 3u64), "3 items");
        assert_eq!(i.tr(Lang::Id).get("no-such-key"), "no-such-key");
        assert!(check_catalogues(&i, std::path::Path::new("/nonexistent")).len() == 1);
        assert_eq!(Lang::parse("en").unwrap(), Lang::En);
        assert!(Lang::parse("fr").is_err());
    }
}
